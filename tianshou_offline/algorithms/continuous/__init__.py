"""Continuous-action offline algorithms: :mod:`.dataset` (device-resident transitions),
:mod:`.nets`, :mod:`.policies`, :mod:`.base` (the continuous base on the shared core) and one
module per algorithm (:mod:`.il`, :mod:`.bcq`, :mod:`.cql`, :mod:`.crr`, :mod:`.td3_bc`).
The public names are re-exported by :mod:`tianshou_offline.algorithms`."""
