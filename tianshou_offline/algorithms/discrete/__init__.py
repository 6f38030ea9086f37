"""Discrete-action offline algorithms: :mod:`.dataset` (frame-indexed device-resident
transitions), :mod:`.nets`, :mod:`.policies`, :mod:`.base` (the discrete base on the shared
core) and one module per algorithm (:mod:`.il`, :mod:`.bcq`, :mod:`.cql`, :mod:`.crr`).
The public names are re-exported by :mod:`tianshou_offline.algorithms`."""
