"""Talking to one store: the catalog, the registry, binary writes, search and status.
Executes what `vestige_embed.target` builds; knows nothing of runs or surfaces."""
