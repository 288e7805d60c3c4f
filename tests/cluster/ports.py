"""Fixed ports of the cluster test's services (each host has its own network namespace, so no clashes)."""

TEMPORAL = 26001
MONGO = 26002
OPENSEARCH = 26003
S3 = 26004
EMULATOR = 26005
NIM = 26006
API = 26007
BUCKET = "flywheel-cluster"
