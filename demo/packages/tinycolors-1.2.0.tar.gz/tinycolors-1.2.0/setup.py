from setuptools import setup

setup(name="tinycolors", version="1.2.0", packages=["tinycolors"])
