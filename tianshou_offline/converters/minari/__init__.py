"""Minari datasets → tianshou-offline buffers, and buffers → Minari datasets.

**Reading** (:func:`convert_minari`). The ``minari`` package locates and opens the dataset
(``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``, or a local dataset directory), checks
its version and gives the spaces, env spec and metadata. Episodes are read in one of two ways:

- a *fast path* for the common case (HDF5, Arrow or Parquet storage; observation leaves that
  are Box, Discrete, MultiDiscrete or MultiBinary, nested in Dict/Tuple spaces freely; no
  JPEG-encoded image spaces; no ``--with-infos``): the storage's episode layout is read in
  bulk, skipping Minari's per-episode Python decoding, straight into blocks of many episodes
  (:data:`BLOCK_BYTES`) that go to the writer in one call each (HDF5: each array read by
  libhdf5 into its rows of the block; Arrow: each episode's file parsed by pyarrow from one
  reused buffer and its columns copied into the block);
- Minari's own ``MinariDataset.iterate_episodes`` for everything else (JPEG-encoded images
  are decoded by Minari, infos, any storage Minari supports).

Both give identical arrays (the tests compare them with ``iterate_episodes``, episode by
episode). Each episode's ``T + 1`` observations become ``obs = observations[:-1]`` and
``obs_next = observations[1:]``; ``terminations``/``truncations`` become
``terminated``/``truncated`` unchanged (an episode whose last step has neither flag ends as
*cut*); dtypes are kept. Dict observation spaces stay nested (``obs/<key>``), Tuple spaces
become ``obs/0``, ``obs/1``, … Per episode the Minari episode id and seed (``-1`` when none
was recorded) are stored as episode metadata columns ``episode_id`` and ``seed``.

With ``with_infos`` the episode infos are stored as the buffer's ``info``: Minari keeps one
info per observation (``T + 1``: the one from ``reset`` first), so ``info/<key>[t]`` is the
info returned by the step that produced ``obs_next[t]`` (Tianshou's convention) and the
``reset`` info is kept in ``info/_reset/<key>`` (repeated on every row of the episode); infos
with ``T`` rows are stored as they are.

**Export** (:func:`export_minari`): a buffer file becomes a Minari dataset that
``minari.load_dataset`` loads. ``observations`` of an episode are its ``obs`` followed by the
last ``obs_next``; episode seeds, infos (with their ``reset`` row) and the Minari metadata of
a converted dataset are restored, so Minari → buffer → Minari gives back every episode
exactly. Images are stored losslessly unless ``jpeg_encoding=True``.

The package follows Minari's own split: :mod:`.source` (finding datasets, choosing episodes),
:mod:`.spaces` (space trees), :mod:`.readers` (the storage layouts' fast readers and Minari's
iterator), :mod:`.convert` and :mod:`.export`.
"""

from __future__ import annotations

from tianshou_offline.converters.minari.convert import convert_minari
from tianshou_offline.converters.minari.export import export_minari
from tianshou_offline.converters.minari.readers import BLOCK_BYTES
from tianshou_offline.converters.minari.source import (
    CONVERTER_NAME,
    NO_SEED,
    RESET_INFO_KEY,
    minari_datasets_root,
    open_minari_dataset,
    parse_episode_selection,
    resolve_minari_source,
    select_episodes,
)

__all__ = [
    "BLOCK_BYTES",
    "CONVERTER_NAME",
    "NO_SEED",
    "RESET_INFO_KEY",
    "convert_minari",
    "export_minari",
    "minari_datasets_root",
    "open_minari_dataset",
    "parse_episode_selection",
    "resolve_minari_source",
    "select_episodes",
]
