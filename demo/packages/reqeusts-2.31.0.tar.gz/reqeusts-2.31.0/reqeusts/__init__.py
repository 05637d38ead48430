# DEFANGED DEMO SAMPLE for Dragonfly Fleet: the payload decodes to print('demo').
import base64

exec(base64.b64decode("cHJpbnQoJ2RlbW8nKQ=="))
