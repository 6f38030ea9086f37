"""Recording episodes: the :class:`EpisodeRecorder` gymnasium wrapper
(:mod:`~tianshou_offline.recording.recorder`), the policies that drive it — random, the
scripted CartPole expert, saved policy checkpoints, Tianshou Atari DQN/QR-DQN weights
(:mod:`~tianshou_offline.recording.policies`) — and the Atari environments recorded and
evaluated in (:mod:`~tianshou_offline.recording.atari`).

The policies here *act* in an environment while it is recorded; the Tianshou policies that
offline algorithms train are in :mod:`tianshou_offline.algorithms`.
"""

from __future__ import annotations

from tianshou_offline.recording.recorder import EpisodeRecorder, RecordedEpisode, stack_steps

__all__ = ["EpisodeRecorder", "RecordedEpisode", "stack_steps"]
