from setuptools import setup

setup(name="multiwheel", version="1.0.0", packages=["multiwheel"])
