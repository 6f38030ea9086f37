"""RL Unplugged Atari shards → compact, exact tianshou-offline buffers (no TensorFlow needed).

The data: per game and run (1–5), 100 GZIP-compressed TFRecord shards
``{Game}/run_{N}-{shard:05d}-of-00100`` of ``tf.train.Example`` records with features
``o_t``/``o_tp1`` (4 PNG frames, 84×84 grayscale, oldest first), ``a_t``/``a_tp1`` (int64),
``r_t``/``d_t`` (float32; ``d_t`` is the discount, 0 at a terminal), ``episode_id`` (int64) and
``episode_return`` (float32).

The conversion streams a shard (bounded memory), verifies every record CRC, decodes one PNG
per record in worker processes and writes one row per record:

- ``obs``: the newest frame of ``o_t``, ``(84, 84)`` uint8; the file has Tianshou's
  ``stack_num=4``, ``save_only_last_obs=True``, ``ignore_obs_next=True`` settings, so a
  loaded buffer rebuilds ``obs``/``obs_next`` stacks of shape ``(4, 84, 84)``;
- ``act = a_t`` (int64), ``rew = r_t`` (float32), ``terminated = d_t == 0``,
  ``truncated`` where the next record starts another episode without a terminal; the last
  record of a shard ends its episode as cut (neither flag) unless it is terminal;
- ``info``: ``episode_id`` (int64), ``episode_return`` (float32), ``a_tp1`` (int64),
  ``discount`` (``d_t``, float32);
- every rebuilt ``obs``/``obs_next`` is checked against the record while converting; where
  they differ (e.g. padding frames at episode starts, the final ``obs_next`` of an episode),
  the exact stack is stored in ``/tianshou_offline/stack_patches`` (see
  :mod:`tianshou_offline.data.framestack`). :func:`load_rl_unplugged` returns a
  :class:`FrameStackReplayBuffer` whose ``buffer[i].obs``/``.obs_next`` equal the records.

No padding: a shard of N records gives exactly N transitions.

The package: :mod:`.sources` (games, shard names, URLs, downloads), :mod:`.shard` (one shard
→ one file), :mod:`.convert` (plans, resume, many shards); loading the converted files is the
data layer's :func:`tianshou_offline.data.shards.load_rl_unplugged`, re-exported here.
"""

from tianshou_offline.converters.rl_unplugged.convert import (
    ShardJob,
    combined_result,
    convert_rl_unplugged_atari,
    is_converted,
    plan_conversion,
    resumed_result,
    shard_outputs,
)
from tianshou_offline.converters.rl_unplugged.shard import ShardResult, convert_shard
from tianshou_offline.converters.rl_unplugged.sources import (
    CONVERTER_NAME,
    CONVERTER_VERSION,
    DEFAULT_CACHE_DIR,
    DEFAULT_OUTPUT_DIR,
    GAMES,
    PREPROCESSING,
    TOTAL_NUM_SHARDS,
    URL_PREFIX,
    atari_num_actions,
    check_game,
    download_file,
    parse_shard_spec,
    shard_filename,
    shard_url,
)
from tianshou_offline.data.shards import load_rl_unplugged

__all__ = [
    "CONVERTER_NAME",
    "CONVERTER_VERSION",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_OUTPUT_DIR",
    "GAMES",
    "PREPROCESSING",
    "TOTAL_NUM_SHARDS",
    "URL_PREFIX",
    "ShardJob",
    "ShardResult",
    "atari_num_actions",
    "check_game",
    "combined_result",
    "convert_rl_unplugged_atari",
    "convert_shard",
    "download_file",
    "is_converted",
    "load_rl_unplugged",
    "parse_shard_spec",
    "plan_conversion",
    "resumed_result",
    "shard_filename",
    "shard_outputs",
    "shard_url",
]
