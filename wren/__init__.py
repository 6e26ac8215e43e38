"""Wren: the code shared by the agent, the BGP sidecar, the CNI plugins and wrenctl.

Layers, each importing only those to its right (checked by import-linter, see pyproject.toml):

    cli, cni  >  ipam  >  client  >  model, selector  >  datastore (raw bodies)  >  kinds, errors
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
