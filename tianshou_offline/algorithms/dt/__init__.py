"""The Decision Transformer (Chen et al. 2021) for continuous and discrete actions:
:mod:`.segments` (trajectory segments from any buffer), :mod:`.model` (the GPT-style network)
and :mod:`.algorithm` (training, return-conditioned acting). The public names are
re-exported by :mod:`tianshou_offline.algorithms`."""
