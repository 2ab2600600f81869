"""Videos of an episode (spo_jax/video.py, `spo-eval RUN --video out.mp4|out.gif`): one per
env family (the package's pure-JAX envs and gymnax's drawn by matplotlib, Brax's by MuJoCo's
headless renderer), read back with imageio; bad paths refused in one line, nothing written.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

iio = pytest.importorskip("imageio.v3")

from spo_jax import envs, eval_cli, video  # noqa: E402
from spo_jax.config import ConfigError  # noqa: E402
from spo_jax.presets import preset  # noqa: E402

TITLE_ROWS = 30  # the frame's title (step and return) changes every frame: compare below it


def _read(path):
  return iio.imread(path, index=None, **({"plugin": "FFMPEG"} if path.suffix == ".mp4" else {}))


def _constant(action):
  return lambda obs, key: jnp.asarray(action, jnp.float32)


def test_the_episode_is_cut_after_its_last_step():
  # balance pushed right at full force tips the pole left past 0.2 rad in a few dozen steps;
  # the scan runs all 200 steps, the episode keeps reset + the steps up to the first done.
  env = envs.make_env("balance")
  episode = video.play_episode(env, _constant([1.0]), jax.random.PRNGKey(0), 200)
  assert 5 < episode.length < 200 and episode.pipeline_states is None
  assert episode.obs.shape == (episode.length + 1, 4)
  assert episode.actions.shape == (episode.length, 1)
  np.testing.assert_array_equal(episode.rewards, np.ones(episode.length))  # 1 per step
  assert abs(episode.obs[-1, 2]) > 0.2 and np.all(np.abs(episode.obs[:-1, 2]) <= 0.2)


@pytest.fixture(scope="module")
def point_reach_run(tmp_path_factory):
  from spo_jax.train import train

  path = tmp_path_factory.mktemp("video") / "run"
  config = preset("point_reach").replace(
      num_envs=4, episode_length=6, num_minibatches=1, update_epochs=1, num_eval_envs=2,
      eval_every=1, max_iterations=1, checkpoint_every=1, policy_hidden_sizes=(8,),
      value_hidden_sizes=(8,))
  train(config, run_dir=path)
  return path


def test_spo_eval_writes_a_gif_of_the_evaluation_episode(point_reach_run, tmp_path, capsys):
  out = tmp_path / "media" / "episode.gif"
  eval_cli.main([str(point_reach_run), "--episodes", "1", "--video", str(out)])
  assert f"wrote {out}: 7 frames (6 steps" in capsys.readouterr().out
  frames = _read(out)
  assert frames.shape == (7, video.HEIGHT, video.WIDTH, 3)  # reset + 6 steps
  # the title counts steps (the barely trained policy moves the point by less than a pixel)
  assert not np.array_equal(frames[0], frames[-1])
  assert [p.name for p in out.parent.iterdir()] == ["episode.gif"]  # no temporary left


@pytest.mark.parametrize("path", ["episode.avi", "episode", "episode.html"])
def test_unsupported_video_formats_are_refused_in_one_line(point_reach_run, tmp_path, capsys,
                                                           path):
  with pytest.raises(SystemExit) as exit_info:
    eval_cli.main([str(point_reach_run), "--video", str(tmp_path / path)])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "unsupported video format" in err[0] and ".mp4 or .gif" in err[0]
  assert list(tmp_path.iterdir()) == []


def test_a_directory_or_a_bad_step_count_is_refused(point_reach_run, tmp_path, capsys):
  for argv in (["--video", str(tmp_path / "d.gif")], ["--video", str(tmp_path / "e.gif"),
                                                      "--video-steps", "0"]):
    (tmp_path / "d.gif").mkdir(exist_ok=True)
    with pytest.raises(SystemExit) as exit_info:
      eval_cli.main([str(point_reach_run), *argv])
    assert exit_info.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
  assert [p.name for p in tmp_path.iterdir()] == ["d.gif"]


# Reading the MP4 back starts the ffmpeg binary (fork, then exec): JAX's fork warning does
# not apply (video.write_video silences it for the write).
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_gymnax_cartpole_is_drawn_to_an_mp4(tmp_path):
  pytest.importorskip("gymnax")
  env = envs.make_env("gymnax:CartPole-v1")
  push_right = _constant([0.0, 1.0])
  episode = video.play_episode(env, push_right, jax.random.PRNGKey(3), 12)
  frames, fps = video.render(env, episode, "gymnax:CartPole-v1")
  assert (len(frames), fps) == (episode.length + 1, 50.0)
  path = tmp_path / "cartpole.mp4"
  video.write_video(frames, path, fps)
  decoded = _read(path)
  assert decoded.shape == (len(frames), video.HEIGHT, video.WIDTH, 3)
  # the cart is pushed and the pole tips (H.264 is lossy: a clear difference, not equality)
  diff = np.abs(decoded[0, TITLE_ROWS:].astype(int) - decoded[-1, TITLE_ROWS:].astype(int))
  assert diff.max() > 100


@pytest.mark.parametrize("name", ["point_reach", ""])  # '': a user's env, drawn as bars
def test_point_reach_is_drawn_and_moves(name):
  env = envs.make_env("point_reach")
  episode = video.play_episode(env, _constant([1.0, -1.0]), jax.random.PRNGKey(1), 3)
  frames, fps = video.render(env, episode, name)
  assert (len(frames), fps) == (4, 20.0) and frames[0].dtype == np.uint8
  # 0.3 units of movement: the drawing itself changes, not only its title
  assert not np.array_equal(frames[0][TITLE_ROWS:], frames[-1][TITLE_ROWS:])


def test_brax_inverted_pendulum_is_rendered_by_mujoco_headless(tmp_path):
  """The one Brax env of this file (compiled once): MuJoCo's renderer through EGL, no
  display; pushing the cart moves it across the frame."""
  env = envs.make_env("inverted_pendulum")
  episode = video.play_episode(env, _constant([1.0]), jax.random.PRNGKey(0), 6)
  # only the pose is kept of each pipeline state: q = [cart position, pole angle]
  assert isinstance(episode.pipeline_states, video.Pose)
  assert episode.pipeline_states.q.shape == (episode.length + 1, 2)
  assert episode.pipeline_states.q[-1, 0] > episode.pipeline_states.q[0, 0]  # pushed right
  frames, fps = video.render(env, episode, "inverted_pendulum")
  assert (len(frames), fps) == (episode.length + 1, pytest.approx(1 / env.dt))
  assert frames[0].shape == (video.HEIGHT, video.WIDTH, 3) and frames[0].max() > 0
  assert not np.array_equal(frames[0], frames[-1])
  path = tmp_path / "pendulum.gif"
  video.write_video(frames, path, fps)
  np.testing.assert_array_equal(_read(path).shape, (len(frames), video.HEIGHT, video.WIDTH, 3))


def test_no_opengl_context_is_one_line_naming_the_fix(monkeypatch):
  """Where EGL is missing, MuJoCo's renderer fails to start: one line naming MUJOCO_GL and
  the packages to install (osmesa the fallback), not a traceback. A one-geom model stands in
  for a Brax env: nothing is compiled."""
  import mujoco

  class _NoContext:
    def __init__(self, *args, **kwargs):
      raise RuntimeError("Cannot initialize a EGL device display.\nsecond line")

  view = video.MujocoView(mujoco.MjModel.from_xml_string(
      "<mujoco><worldbody><geom size='0.1'/></worldbody></mujoco>"), 0.01, None)

  monkeypatch.setattr(mujoco, "Renderer", _NoContext)
  monkeypatch.setenv("MUJOCO_GL", "egl")
  with pytest.raises(ConfigError) as error:
    video.mujoco_frames(view, None)
  message = str(error.value)
  assert "\n" not in message and "MUJOCO_GL='egl'" in message
  assert "Cannot initialize a EGL device display" in message and "MUJOCO_GL=osmesa" in message


def test_a_gif_faster_than_50_frames_per_second_keeps_every_kth_frame_and_the_last(tmp_path):
  # 10 frames at 100 per second (MuJoCo's dt = 0.01 s): stride ceil(100 / 50) = 2 keeps frames
  # 0, 2, 4, 6, 8 and the last, 9, so the end is shown, at 50 per second: 20 ms each (a GIF
  # stores hundredths of a second); at 25 per second every frame is kept
  frames = [np.full((video.HEIGHT, video.WIDTH, 3), 20 * i, np.uint8) for i in range(10)]
  path = tmp_path / "fast.gif"
  assert video.write_video(frames, path, 100.0) == (6, pytest.approx(50.0))
  np.testing.assert_array_equal(_read(path)[:, 0, 0, 0], [0, 40, 80, 120, 160, 180])
  assert iio.immeta(path, index=0)["duration"] == pytest.approx(20.0)
  assert video.write_video(frames[:9], path, 100.0)[0] == 5  # 0, 2, 4, 6, 8: 8 is the last
  assert video.write_video(frames, path, 25.0) == (10, 25.0)
