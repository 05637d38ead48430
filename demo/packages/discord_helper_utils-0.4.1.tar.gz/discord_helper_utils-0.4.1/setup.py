from setuptools import setup

setup(name="discord_helper_utils", version="0.4.1", packages=["discord_helper_utils"])
