"""The test control plane: Go wrapper module (go.mod, cmd/) and the Python launcher (cluster.py)."""
