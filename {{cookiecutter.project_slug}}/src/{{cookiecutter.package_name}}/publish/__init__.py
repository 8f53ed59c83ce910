"""Publishing: the gate that refuses unreproduced runs, and the registries versions go to."""
