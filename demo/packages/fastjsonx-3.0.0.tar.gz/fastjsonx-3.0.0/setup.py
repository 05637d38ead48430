from setuptools import setup

setup(name="fastjsonx", version="3.0.0", packages=["fastjsonx"])
