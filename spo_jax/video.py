"""Videos of a policy's episode, rendered offline on a headless machine (`spo-eval RUN --video
out.mp4` or `out.gif`): no display, no network.

An episode is played by one jitted `lax.scan` (`play_episode`), then drawn frame by frame:

- a Brax env (a `PipelineEnv`, the registry's or a user's) or a MuJoCo Playground env:
  MuJoCo's own renderer (`mujoco.Renderer`) on each step's joint positions (`mujoco_view`),
  through the OpenGL platform named by `MUJOCO_GL`. spo_jax sets it to `egl` (headless,
  Mesa's libEGL) before MuJoCo is first imported (spo_jax/__init__.py); where EGL is missing,
  run with `MUJOCO_GL=osmesa`.
  The model's first camera (Brax's 'track' camera follows the torso), else MuJoCo's default
  free camera.
- the package's pure-JAX envs and gymnax's classic control: a matplotlib drawing of the
  observation (the Agg canvas, no display), one per env in `DRAWINGS`; any other env (a
  user's own without a physics system) gets bars of its observation.

Files are written by imageio (GIF through Pillow, MP4 through the ffmpeg binary that
imageio-ffmpeg bundles: no system package), to a temporary file beside the target, then
renamed, so a failed write leaves nothing behind. imageio is the optional extra `video`;
it and matplotlib (~0.4 s) are imported inside the functions that use them, so spo-eval
without --video loads neither.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from brax.envs.base import PipelineEnv, Wrapper

from spo_jax.errors import ConfigError

VIDEO_FORMATS = (".mp4", ".gif")
HEIGHT, WIDTH = 240, 320  # multiples of 16: ffmpeg's H.264 encoder takes them unscaled
GIF_MAX_FPS = 50.0  # browsers slow down GIF frames shorter than 2/100 s
INSTALL_HINT = "pip install 'spo_jax[video]' (or pip install imageio imageio-ffmpeg)"


def check_video_path(path: str | Path, flag: str = "--video") -> Path:
  """`path` as a Path if it names a file in a supported format; `ConfigError` (one line)
  otherwise, or when the writer's package is missing. Reads and writes nothing."""
  path = Path(path)
  if path.suffix.lower() not in VIDEO_FORMATS:
    raise ConfigError(f"{flag} '{path}': unsupported video format '{path.suffix}'; the path "
                      f"must end in {' or '.join(VIDEO_FORMATS)}")
  if path.is_dir():
    raise ConfigError(f"{flag} '{path}' is a directory; give a file path")
  try:
    import imageio  # noqa: F401
    if path.suffix.lower() == ".mp4":
      import imageio_ffmpeg  # noqa: F401
  except ImportError as error:
    raise ConfigError(f"{flag} needs the '{error.name}' package, which is not installed: "
                      f"{INSTALL_HINT}") from error
  return path


class Pose(NamedTuple):
  """What MuJoCo's renderer needs of a step's physics state (not the whole state: contacts and
  body frames of 1000 humanoid steps would take hundreds of MB)."""

  q: jax.Array  # [nq] joint positions
  qd: jax.Array  # [nv] joint velocities


class Episode(NamedTuple):
  """One episode from reset, cut after its last step. T = `length`."""

  # [T+1, ...]: reset's, then each step's: a `Pose` for a MuJoCo env, else the env's own
  # pipeline state (None for the package's envs, gymnax's state for gymnax's)
  pipeline_states: Any
  obs: np.ndarray  # [T+1, O]
  actions: np.ndarray  # [T, A], the env's actions
  rewards: np.ndarray  # [T]
  length: int  # steps until `done` or the horizon


def play_episode(env, policy: Callable[[jax.Array, jax.Array], jax.Array], key: jax.Array,
                 horizon: int) -> Episode:
  """One episode of `policy(obs, key) -> action` from `env.reset`, at most `horizon` steps,
  as one jitted scan; the steps after `done` are computed and cut off on the host."""
  k_reset, k_act = jax.random.split(key)
  physics = mujoco_view(env)

  def kept(state):  # what a frame is drawn from, besides the observation
    return state.pipeline_state if physics is None else Pose(*physics.pose(state.pipeline_state))

  @jax.jit
  def run(k_reset, k_act):
    first = env.reset(k_reset)

    def step(carry, t):
      state, done = carry
      action = policy(state.obs, jax.random.fold_in(k_act, t))
      state = env.step(state, action)
      # `done` before this step: 1 for the steps past the end of the episode
      return ((state, jnp.maximum(done, state.done)),
              (kept(state), state.obs, state.reward, action, done))

    _, steps = jax.lax.scan(step, (first, first.done), jnp.arange(horizon))
    return (kept(first), first.obs), steps

  (first_kept, first_obs), steps = jax.device_get(run(k_reset, k_act))
  step_kept, obs, rewards, actions, done_before = steps
  length = int(np.sum(np.asarray(done_before) == 0))
  stacked = jax.tree.map(lambda a, b: np.concatenate([np.asarray(a)[None], b[:length]]),
                         first_kept, step_kept)
  obs = np.concatenate([np.asarray(first_obs)[None], np.asarray(obs)[:length]])
  return Episode(stacked, obs, np.asarray(actions)[:length], np.asarray(rewards)[:length],
                 length)


class MujocoView(NamedTuple):
  """What MuJoCo's renderer needs of an env with MuJoCo physics."""

  mj_model: Any  # mujoco.MjModel
  dt: float  # seconds of simulated time per env step: the frame period
  pose: Callable[[Any], tuple[jax.Array, jax.Array]]  # pipeline state -> (qpos, qvel)


def mujoco_view(env) -> MujocoView | None:
  """The MuJoCo side of `env`: a Brax `PipelineEnv` (itself or under a wrapper), or an env that
  exposes `mj_model`, `dt` and `pose(pipeline_state)` (Playground's, playground_env.py); None
  for the package's pure-JAX envs, gymnax's and a user's env without MuJoCo physics."""
  if isinstance(env, Wrapper):
    env = env.unwrapped
  if isinstance(env, PipelineEnv):
    return MujocoView(env.sys.mj_model, float(env.dt), lambda p: (p.q, p.qd))
  if all(hasattr(type(env), name) for name in ("mj_model", "dt", "pose")):
    return MujocoView(env.mj_model, float(env.dt), env.pose)
  return None


def mujoco_frames(view: MujocoView, episode: Episode) -> list[np.ndarray]:
  """[HEIGHT, WIDTH, 3] uint8 frames of an episode, by MuJoCo's renderer on each step's joint
  positions and velocities (`episode.pipeline_states`, a `Pose`)."""
  model = view.mj_model
  data = mujoco.MjData(model)
  if model.ncam > 0:
    camera: Any = 0
  else:
    camera = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(model, camera)
  try:
    renderer = mujoco.Renderer(model, height=HEIGHT, width=WIDTH)
  except Exception as error:  # noqa: BLE001 (which OpenGL failure depends on the machine)
    platform = os.environ.get("MUJOCO_GL", "")
    raise ConfigError(
        f"MuJoCo cannot open an OpenGL context with MUJOCO_GL={platform!r} "
        f"({type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}); "
        "headless rendering needs EGL (apt-get install libegl1) or OSMesa (apt-get install "
        "libosmesa6, then run with MUJOCO_GL=osmesa)") from error
  q, qd = np.asarray(episode.pipeline_states.q), np.asarray(episode.pipeline_states.qd)
  frames = []
  with renderer:
    for t in range(episode.length + 1):
      data.qpos, data.qvel = q[t], qd[t]
      mujoco.mj_forward(model, data)
      renderer.update_scene(data, camera=camera)
      frames.append(renderer.render().copy())
  return frames


# Drawings: draw(ax, episode, t) draws the state after step t (0: the reset state) on a
# cleared matplotlib Axes.


def _draw_cartpole(ax, episode: Episode, t: int) -> None:
  """obs = [x, x_dot, theta, theta_dot] (balance, gymnax's CartPole-v1): a pole of length 1
  on a cart, the track's limits at |x| = 2.4."""
  x, theta = episode.obs[t, 0], episode.obs[t, 2]
  ax.set_xlim(-2.6, 2.6)
  ax.set_ylim(-0.4, 1.4)
  ax.axhline(0.0, color="0.6", lw=1)
  ax.axvline(-2.4, color="0.6", ls="--", lw=1)
  ax.axvline(2.4, color="0.6", ls="--", lw=1)
  ax.add_patch(_rectangle((x - 0.25, -0.1), 0.5, 0.2, "tab:blue"))
  ax.plot([x, x + np.sin(theta)], [0.0, np.cos(theta)], color="tab:orange", lw=4)


def _draw_point_reach(ax, episode: Episode, t: int) -> None:
  """obs = [position (2), target (2)]: the path so far, the point and its target; the
  episode ends outside [-2, 2]^2."""
  ax.set_xlim(-2.1, 2.1)
  ax.set_ylim(-2.1, 2.1)
  ax.add_patch(_rectangle((-2.0, -2.0), 4.0, 4.0, "none", edge="0.6"))
  path = episode.obs[:t + 1, :2]
  ax.plot(path[:, 0], path[:, 1], color="tab:blue", lw=1, alpha=0.5)
  ax.plot(*episode.obs[t, 2:4], marker="x", color="tab:red", ms=12, mew=3)
  ax.plot(*episode.obs[t, :2], marker="o", color="tab:blue", ms=10)


def _draw_matrix_game(ax, episode: Episode, t: int) -> None:
  """The one-step game: the chosen outcome (the one-hot action) after the step, none before."""
  size = episode.actions.shape[-1] if episode.actions.size else 1
  heights = episode.actions[t - 1] if t > 0 else np.zeros(size)
  ax.bar(np.arange(size), heights, color="tab:blue")
  ax.set_ylim(0.0, 1.1)
  ax.set_xticks(np.arange(size))
  ax.set_xlabel("outcome")


def _draw_pendulum(ax, episode: Episode, t: int) -> None:
  """obs = [cos theta, sin theta, theta_dot], theta = 0 upright and counter-clockwise
  positive (gymnax's Pendulum-v1, drawn as Gym draws it: the tip at (-sin, cos))."""
  cos, sin = episode.obs[t, 0], episode.obs[t, 1]
  ax.set_xlim(-1.2, 1.2)
  ax.set_ylim(-1.2, 1.2)
  ax.plot([0.0, -sin], [0.0, cos], color="tab:orange", lw=5)
  ax.plot(0.0, 0.0, marker="o", color="k")


def _draw_acrobot(ax, episode: Episode, t: int) -> None:
  """obs = [cos θ1, sin θ1, cos θ2, sin θ2, θ1_dot, θ2_dot], θ = 0 hanging down (gymnax's
  Acrobot-v1); the goal is the tip above the line at height 1."""
  theta1 = np.arctan2(episode.obs[t, 1], episode.obs[t, 0])
  theta2 = np.arctan2(episode.obs[t, 3], episode.obs[t, 2])
  elbow = np.array([np.sin(theta1), -np.cos(theta1)])
  tip = elbow + np.array([np.sin(theta1 + theta2), -np.cos(theta1 + theta2)])
  ax.set_xlim(-2.2, 2.2)
  ax.set_ylim(-2.2, 2.2)
  ax.axhline(1.0, color="0.6", ls="--", lw=1)
  ax.plot([0.0, elbow[0], tip[0]], [0.0, elbow[1], tip[1]], color="tab:orange", lw=4,
          marker="o")


def _draw_mountain_car(ax, episode: Episode, t: int) -> None:
  """obs = [position, velocity] on the hill height = 0.45 sin(3 position) + 0.55 (gymnax's
  MountainCar-v0 and MountainCarContinuous-v0); the flag at 0.5."""
  hill = np.linspace(-1.2, 0.6, 100)
  ax.plot(hill, 0.45 * np.sin(3 * hill) + 0.55, color="0.4")
  ax.plot([0.5, 0.5], [0.45 * np.sin(1.5) + 0.55, 1.2], color="tab:red")
  x = episode.obs[t, 0]
  ax.plot(x, 0.45 * np.sin(3 * x) + 0.55, marker="o", color="tab:blue", ms=12)
  ax.set_xlim(-1.25, 0.65)
  ax.set_ylim(-0.05, 1.25)


def _draw_observation(ax, episode: Episode, t: int) -> None:
  """Any env: bars of the observation, on the episode's range."""
  low, high = float(np.min(episode.obs)), float(np.max(episode.obs))
  pad = 0.05 * max(high - low, 1e-3)
  ax.bar(np.arange(episode.obs.shape[-1]), episode.obs[t], color="tab:blue")
  ax.set_ylim(min(low, 0.0) - pad, max(high, 0.0) + pad)
  ax.set_xlabel("observation entry")


def _rectangle(xy, width, height, color, edge=None):
  from matplotlib.patches import Rectangle

  return Rectangle(xy, width, height, facecolor=color, edgecolor=edge or color)


class Drawing(NamedTuple):
  """A matplotlib drawing of one env's state: `draw(ax, episode, t)` and the frame rate
  (one frame per env step: 1 / the env's time step)."""

  draw: Callable[[Any, Episode, int], None]
  fps: float


# By env name, as `config.env` writes it; others get `OBSERVATION_DRAWING`.
DRAWINGS: dict[str, Drawing] = {
    "balance": Drawing(_draw_cartpole, 50.0),
    "point_reach": Drawing(_draw_point_reach, 20.0),
    "matrix_game": Drawing(_draw_matrix_game, 1.0),
    "gymnax:CartPole-v1": Drawing(_draw_cartpole, 50.0),
    "gymnax:Pendulum-v1": Drawing(_draw_pendulum, 20.0),
    "gymnax:Acrobot-v1": Drawing(_draw_acrobot, 5.0),
    "gymnax:MountainCar-v0": Drawing(_draw_mountain_car, 30.0),
    "gymnax:MountainCarContinuous-v0": Drawing(_draw_mountain_car, 30.0),
}
OBSERVATION_DRAWING = Drawing(_draw_observation, 20.0)


def drawn_frames(drawing: Drawing, episode: Episode, title: str) -> list[np.ndarray]:
  """[HEIGHT, WIDTH, 3] uint8 frames of `drawing`, on matplotlib's Agg canvas (no display),
  each titled with the step and the return so far."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  dpi = 80
  figure = Figure(figsize=(WIDTH / dpi, HEIGHT / dpi), dpi=dpi)
  canvas = FigureCanvasAgg(figure)
  ax = figure.add_subplot()
  returns = np.concatenate([[0.0], np.cumsum(episode.rewards)])
  frames = []
  for t in range(episode.length + 1):
    ax.clear()
    drawing.draw(ax, episode, t)
    ax.set_title(f"{title}  step {t}  return {returns[t]:.1f}", fontsize=9)
    canvas.draw()
    frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
  return frames


def render(env, episode: Episode, name: str) -> tuple[list[np.ndarray], float]:
  """Frames of `episode` and their rate: MuJoCo for a Brax env, else the matplotlib drawing
  of the env `name` (`config.env`; '' for a user's env without one)."""
  physics = mujoco_view(env)
  if physics is not None:
    return mujoco_frames(physics, episode), 1.0 / physics.dt
  drawing = DRAWINGS.get(name, OBSERVATION_DRAWING)
  return drawn_frames(drawing, episode, name or type(env).__name__), drawing.fps


def write_video(frames: list[np.ndarray], path: Path, fps: float) -> tuple[int, float]:
  """Write `frames` ([H, W, 3] uint8) to `path` (.gif or .mp4) at `fps` frames per second,
  through a temporary file in the same folder renamed onto `path`. Returns the frames written
  and their rate (a GIF faster than 50 frames per second keeps every k-th frame)."""
  import imageio.v3 as iio

  path.parent.mkdir(parents=True, exist_ok=True)
  suffix = path.suffix.lower()
  temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{suffix}")
  try:
    if suffix == ".gif":
      # A GIF stores each frame's delay in hundredths of a second, and browsers play delays
      # under 2 (faster than 50 frames per second) at 10: so faster videos keep every k-th
      # frame, at fps / k <= 50 (MuJoCo envs with dt = 0.01 s: every second frame, 50 fps).
      stride = max(1, math.ceil(fps / GIF_MAX_FPS))
      kept = frames[::stride]
      if (len(frames) - 1) % stride:
        kept = [*kept, frames[-1]]  # the last frame too, so the end is shown
      iio.imwrite(temporary, np.stack(kept), extension=".gif", duration=1000.0 * stride / fps,
                  loop=0)
      written = (len(kept), fps / stride)
    else:
      with warnings.catch_warnings():
        # imageio-ffmpeg starts the ffmpeg binary (fork, then exec at once): JAX's warning
        # that a fork may deadlock a multithreaded process does not apply
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        iio.imwrite(temporary, np.stack(frames), plugin="FFMPEG", fps=fps)
      written = (len(frames), fps)
    os.replace(temporary, path)
  finally:
    temporary.unlink(missing_ok=True)
  return written


def save_video(setup, params, path: Path, key: jax.Array, deterministic: bool = True,
               max_steps: int | None = None) -> str:
  """Play one episode of a loaded policy (`setup`: a `LoadedPolicy` or a `Setup`) for at most
  the run's evaluation horizon (and `max_steps`), render and write it; returns a sentence
  saying what was written."""
  config, env = setup.config, setup.env
  horizon = config.eval_horizon if max_steps is None else min(max_steps, config.eval_horizon)
  policy = setup.make_policy(params, deterministic=deterministic)
  episode = play_episode(env, policy, key, horizon)
  name = "" if setup.user_env else config.env
  frames, fps = render(env, episode, name)
  count, rate = write_video(frames, path, fps)
  return (f"wrote {path}: {count} frames ({episode.length} steps, return "
          f"{float(np.sum(episode.rewards)):.2f}) at {rate:g} frames per second")
