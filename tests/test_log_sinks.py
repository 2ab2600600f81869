"""spo_jax/log_sinks.py: which run a row belongs to (`RunKeys`), TensorBoard event files
written directly (read back from the TFRecord bytes), and W&B runs driven through a
stand-in `wandb` module (the real package: tests/test_wandb.py)."""

import struct
import sys
import types

import pytest

from spo_jax.log_sinks import RunKeys, TensorBoardSink, WandbSink, _session_start
from spo_jax.loggers import LogOptions, MetricsLogger

SWEEP_TAGS = [{"point": 0, "learning_rate": 1e-3, "seed": 3},
              {"point": 1, "entropy_coef": 0.01, "seed": 3},
              {"point": 1, "entropy_coef": 0.01, "seed": 4}]


def events_of(directory):
  """Every event of every event file in `directory`, files in name order. A TFRecord is
  length (u64), its crc (u32), the payload, the payload's crc (u32)."""
  from tensorboardX.proto.event_pb2 import Event

  events = []
  for path in sorted(directory.glob("events.out.tfevents.*")):
    data, offset = path.read_bytes(), 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      events.append(Event.FromString(data[offset + 12:offset + 12 + length]))
      offset += 12 + length + 4
  return events


def scalars_of(directory):
  return [(e.step, v.tag, v.simple_value) for e in events_of(directory) for v in e.summary.value
          if not v.metadata.plugin_data.plugin_name]


def test_a_plain_runs_keys_are_its_seeds():
  keys = RunKeys()
  assert keys.of({"seed": 3, "step": 10}) == 3 and keys.of({"step": 10}) == 0
  assert (keys.label(3), keys.id_suffix(3), keys.seed(3)) == ("seed_3", "seed3", 3)
  assert keys.point_values(3) == {} and keys.point_fields == () and keys.tags is None


def test_a_sweep_groups_keys_are_point_and_seed():
  keys = RunKeys(SWEEP_TAGS)
  assert keys.of({"point": 1, "seed": 4, "step": 10}) == (1, 4)
  assert (keys.label((1, 4)), keys.id_suffix((1, 4)), keys.seed((1, 4))) == (
      "point_1/seed_4", "p1-seed4", 4)
  assert keys.point_values((0, 3)) == {"point": 0, "learning_rate": 1e-3}
  # Every field any point sets, in first-seen order, without the seed: not metrics.
  assert keys.point_fields == ("point", "learning_rate", "entropy_coef")
  assert sorted(keys.tags) == [(0, 3), (1, 3), (1, 4)]


def test_tensorboard_writes_numbers_at_the_rows_env_steps_one_directory_per_seed(tmp_path):
  sink = TensorBoardSink(tmp_path, [])
  sink.write([{"step": 100, "seed": 0, "iteration": 1, "eval/episode_reward": 2.5,
               "guard/ok": True, "note": "text", "sizes": [8]},
              {"step": 120, "seed": 2, "iteration": 1, "eval/episode_reward": -1.0}])
  sink.write([{"step": 200, "seed": 0, "iteration": 2, "eval/episode_reward": 3.5}])
  sink.close()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["seed_0", "seed_2"]
  # step and seed are the axes; booleans, text and lists are not scalars.
  assert scalars_of(tmp_path / "seed_0") == [(100, "iteration", 1.0),
                                             (100, "eval/episode_reward", 2.5),
                                             (200, "iteration", 2.0),
                                             (200, "eval/episode_reward", 3.5)]
  assert scalars_of(tmp_path / "seed_2") == [(120, "iteration", 1.0),
                                             (120, "eval/episode_reward", -1.0)]


def test_open_all_purges_old_events_of_every_seed_folder_before_any_new_row(tmp_path):
  old = TensorBoardSink(tmp_path, [])
  old.write([{"step": 100, "seed": 1, "eval/episode_reward": 1.0}])
  old.close()
  (tmp_path / "seed_notes").mkdir()  # not a seed's folder: left alone
  resumed = TensorBoardSink(tmp_path, [])  # resumed with no row kept
  resumed.open_all()
  resumed.close()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["seed_1", "seed_notes"]
  assert list((tmp_path / "seed_notes").iterdir()) == []
  # The new file starts with a session START at step 0: TensorBoard hides every older event.
  starts = [e.step for e in events_of(tmp_path / "seed_1")
            if e.HasField("session_log") and e.session_log.status == 1]
  assert starts == [0]
  assert scalars_of(tmp_path / "seed_1") == [(100, "eval/episode_reward", 1.0)]


def test_session_start_holds_the_points_values_as_hyperparameters():
  from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

  summary = _session_start({"point": 2, "learning_rate": 0.5, "normalize_observations": False,
                            "activation": "relu", "policy_hidden_sizes": [8, 8]})
  (value,) = summary.value
  assert value.tag == "_hparams_/session_start_info"
  assert value.metadata.plugin_data.plugin_name == "hparams"
  info = HParamsPluginData.FromString(value.metadata.plugin_data.content).session_start_info
  assert info.group_name == "point_2"
  kinds = {k: (v.WhichOneof("kind"), getattr(v, v.WhichOneof("kind")))
           for k, v in info.hparams.items()}
  # A bool is not a number here (bool is an int subclass in Python); a list is JSON text.
  assert kinds == {"point": ("number_value", 2.0), "learning_rate": ("number_value", 0.5),
                   "normalize_observations": ("bool_value", False),
                   "activation": ("string_value", "relu"),
                   "policy_hidden_sizes": ("string_value", "[8, 8]")}


class _FakeWandb:
  """`wandb.init` returning runs that record what they are given."""

  def __init__(self, fail_finish=()):
    self.runs, self.fail_finish = [], fail_finish

  def init(self, **kwargs):
    wandb = self

    class Run:
      def __init__(self):
        self.kwargs, self.logged, self.metrics, self.finished = kwargs, [], [], False

      def define_metric(self, name, step_metric=None):
        self.metrics.append((name, step_metric))

      def log(self, data, step):
        self.logged.append((step, data))

      def finish(self):
        self.finished = True
        if kwargs["id"].endswith(wandb.fail_finish):
          raise RuntimeError(f"cannot finish {kwargs['id']}")

    self.runs.append(Run())
    return self.runs[-1]


def _wandb_sink(monkeypatch, run_dir, fake, kept=(), run_tags=None, **options):
  monkeypatch.setitem(sys.modules, "wandb", fake)
  return WandbSink(run_dir, LogOptions(wandb=True, **options), {"seed": 3, "num_envs": 8},
                   num_seeds=2, kept=list(kept), run_tags=run_tags)


def test_wandb_one_run_per_seed_with_a_stable_id_and_only_that_seeds_rows(monkeypatch,
                                                                           tmp_path):
  run_dir = tmp_path / "hopper"
  run_dir.mkdir()
  kept = [{"step": 50, "iteration": 1, "seed": 3, "eval/episode_reward": 1.0}]
  fake = _FakeWandb()
  sink = _wandb_sink(monkeypatch, run_dir, fake, kept, wandb_project="p")
  base = (run_dir / "wandb_id.txt").read_text().strip()
  assert len(base) == 8  # 4 random bytes in hex
  first, second = fake.runs
  # Seeds config.seed + i = 3 and 4, named and grouped after the run directory.
  assert [r.kwargs["id"] for r in fake.runs] == [f"{base}-seed3", f"{base}-seed4"]
  assert [r.kwargs["name"] for r in fake.runs] == ["hopper/seed_3", "hopper/seed_4"]
  assert {r.kwargs["group"] for r in fake.runs} == {"hopper"}
  assert second.kwargs["config"] == {"seed": 3, "num_envs": 8, "run_seed": 4}
  assert second.kwargs["resume"] == "allow" and second.kwargs["project"] == "p"
  assert first.metrics == [("step", None), ("*", "step")]  # env steps: every curve's x
  assert first.logged == [(1, {"eval/episode_reward": 1.0, "step": 50})]  # a new id: kept rows
  sink.write([{"step": 100, "iteration": 2, "seed": 4, "eval/episode_reward": 2.0,
               "guard/ok": True, "note": "text", "train/total_queries": 7}])
  assert second.logged == [(2, {"eval/episode_reward": 2.0, "train/total_queries": 7,
                                "step": 100})]
  assert len(first.logged) == 1
  sink.close()
  assert first.finished and second.finished

  resumed = _FakeWandb()
  _wandb_sink(monkeypatch, run_dir, resumed, kept).close()
  # The same W&B runs continue; their rows are not sent a second time.
  assert [r.kwargs["id"] for r in resumed.runs] == [f"{base}-seed3", f"{base}-seed4"]
  assert all(r.logged == [] for r in resumed.runs)


def test_wandb_a_sweep_groups_runs_are_points_and_seeds(monkeypatch, tmp_path):
  fake = _FakeWandb()
  _wandb_sink(monkeypatch, tmp_path, fake, run_tags=SWEEP_TAGS, wandb_name="lr",
              wandb_group="g").close()
  base = (tmp_path / "wandb_id.txt").read_text().strip()
  assert [(r.kwargs["id"], r.kwargs["name"]) for r in fake.runs] == [
      (f"{base}-p0-seed3", "lr/point_0/seed_3"), (f"{base}-p1-seed3", "lr/point_1/seed_3"),
      (f"{base}-p1-seed4", "lr/point_1/seed_4")]
  assert {r.kwargs["group"] for r in fake.runs} == {"g"}
  assert fake.runs[1].kwargs["config"] == {"seed": 3, "num_envs": 8, "point": 1,
                                           "entropy_coef": 0.01, "run_seed": 3}


def test_wandb_close_finishes_every_run_then_raises_the_first_failure(monkeypatch, tmp_path):
  fake = _FakeWandb(fail_finish="seed3")
  sink = _wandb_sink(monkeypatch, tmp_path, fake)
  with pytest.raises(RuntimeError, match="cannot finish .*-seed3"):
    sink.close()
  assert [r.finished for r in fake.runs] == [True, True]
  sink.close()  # nothing left open: a second close does nothing


def test_wandb_runs_already_open_are_finished_when_a_later_seed_fails(monkeypatch, tmp_path):
  """A stand-in `wandb` whose second `init` fails (what the real package does with a bad
  entity, say): the first seed's run is finished, not left open, and the error reaches the
  caller. What the real package logs is tested in tests/test_wandb.py."""
  calls = []

  class Run:
    def define_metric(self, *args, **kwargs):
      pass

    def finish(self):
      calls.append("finish")

  def init(**kwargs):
    calls.append(kwargs["id"])
    if len(calls) > 1:
      raise RuntimeError("no such entity")
    return Run()

  monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
  import importlib.util

  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: object() if name == "wandb" else real(name, *a))
  options = LogOptions(csv=False, tensorboard=False, wandb=True, wandb_mode="offline")
  with pytest.raises(RuntimeError, match="no such entity"):
    MetricsLogger(tmp_path, options, {"seed": 3}, num_seeds=2)
  base = (tmp_path / "wandb_id.txt").read_text().strip()
  assert calls == [f"{base}-seed3", f"{base}-seed4", "finish"]
