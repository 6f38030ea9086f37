"""Scale out on Ray: distributed conversion of many shards and experiment grids.

- :mod:`~tianshou_offline.scale.convert`: :func:`convert_rl_unplugged_atari_ray`, one Ray
  task per RL Unplugged shard (the converter of
  :mod:`tianshou_offline.converters.rl_unplugged`, its plan, checks and ``resume``), with
  Ray's task retries for workers that die and a summary of the shards that failed;
- :mod:`~tianshou_offline.scale.grid`: experiment grids (algorithm × dataset × seed ×
  overrides), one Ray task per :class:`~tianshou_offline.scale.grid.Cell`
  (:func:`~tianshou_offline.scale.grid.run_cell` trains with Tianshou's ``OfflineTrainer``,
  evaluates, logs to TensorBoard and checkpoints; an interrupted grid resumes), and the
  results table (:func:`~tianshou_offline.scale.grid.aggregate`);
- :mod:`~tianshou_offline.scale.algorithms`: the algorithms a grid names
  (:func:`~tianshou_offline.scale.algorithms.build_algorithm`).

Ray is an optional extra (``pip install "tianshou-offline[ray]"``), imported inside the
functions that use it (:func:`~tianshou_offline.scale._ray.ray_session`).
"""

from tianshou_offline.scale._ray import no_tensorflow

# Ray workers import this package to run its tasks, before anything imports Tianshou (whose
# TensorBoard logger would otherwise import TensorFlow: seconds and ~500 MB per worker).
no_tensorflow()
