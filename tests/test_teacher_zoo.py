"""Tests for the teacher zoo: spo_jax/teachers/nonmarkov.py, raters.py, matrix_game.py and the
MatrixGame env.

Each teacher gets hand-worked cases (arithmetic in the comments), the protocol contract, and
the property that makes it worth having: the non-Markovian teachers disagree with every
reward when only the order of the steps differs, the raters' majority cycles, and the
matrix game's Minimax Winner is the linear program's.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spo_jax
from spo_jax.config import ConfigError
from spo_jax.envs import PACKAGE_ENVS
from spo_jax.teachers import EnvSpec, Mistake, Oracle, TeacherStep, summarize, validate_teacher
from spo_jax.teachers.matrix_game import (
  MINIMAX_WINNERS,
  TABLES,
  PayoffTable,
  check_table,
  minimax_winner,
)
from spo_jax.teachers.nonmarkov import Constraint, Deadline, Peak, Steady, parse_quantity
from spo_jax.teachers.raters import PRESETS, MajorityOfRaters, preset_weights, spatial_weights
from spo_jax.tiny_envs import MatrixGame
from spo_jax.winrate import compute_winrates

KEY = jax.random.PRNGKey(0)
BALANCE = EnvSpec("balance", 4, 1, ("angle", "position"), 8)
GAME = EnvSpec("matrix_game", 1, 1, ("outcome",), 1)
# What the installed Brax reports (checked once against brax.envs by hand; building the
# envs here would cost minutes).
BRAX_SPECS = {
    "ant": EnvSpec("ant", 27, 8, (
        "distance_from_origin", "forward_reward", "reward_contact", "reward_ctrl",
        "reward_forward", "reward_survive", "x_position", "x_velocity", "y_position",
        "y_velocity"), 1000),
    "halfcheetah": EnvSpec("halfcheetah", 17, 6,
                           ("reward_ctrl", "reward_run", "x_position", "x_velocity"), 1000),
    "hopper": EnvSpec("hopper", 11, 3, ("reward_ctrl", "reward_forward", "reward_healthy",
                                        "x_position", "x_velocity"), 1000),
    "walker2d": EnvSpec("walker2d", 17, 6, ("reward_ctrl", "reward_forward", "reward_healthy",
                                            "x_position", "x_velocity"), 1000),
    "humanoid": EnvSpec("humanoid", 244, 17, (
        "distance_from_origin", "forward_reward", "reward_alive", "reward_linvel",
        "reward_quadctrl", "x_position", "x_velocity", "y_position", "y_velocity"), 1000),
    "inverted_pendulum": EnvSpec("inverted_pendulum", 4, 1, (), 1000),
    "balance": BALANCE,
    "point_reach": EnvSpec("point_reach", 4, 2, ("distance",), 32),
}


def teacher_for(spec=BALANCE, **fields):
  return spo_jax.make_teacher(spo_jax.Config(env=spec.name, **fields), spec)


def steps(reward, mask=None, metrics=None, next_obs=None, action=None):
  """TeacherStep [H, N, ...] from rewards [H, N] (metrics: name -> [H, N])."""
  reward = jnp.asarray(reward, jnp.float32)
  horizon, num = reward.shape
  mask = jnp.ones_like(reward) if mask is None else jnp.asarray(mask, jnp.float32)
  obs = jnp.zeros((horizon, num, 4)) if next_obs is None else jnp.asarray(next_obs, jnp.float32)
  action = jnp.zeros((horizon, num, 1)) if action is None else jnp.asarray(action, jnp.float32)
  metrics = {k: jnp.asarray(v, jnp.float32) for k, v in (metrics or {}).items()}
  t = jnp.broadcast_to(jnp.arange(horizon, dtype=jnp.int32)[:, None], (horizon, num))
  return TeacherStep(obs=obs, next_obs=obs, action=action, reward=reward, metrics=metrics,
                     mask=mask, t=t)


summarize_jit = jax.jit(summarize, static_argnums=0)


def _pairs(teacher, summaries):
  """[N, N] compare(s_i, s_j) of summaries with leading axis N."""
  return jax.vmap(jax.vmap(lambda a, b: teacher.compare(a, b, KEY), (None, 0)), (0, None))(
      summaries, summaries)


# Teachers are frozen dataclasses, hence hashable: they can be static arguments.
pairs = jax.jit(_pairs, static_argnums=0)


def prefs(teacher, trajectory_steps):
  """[N, N] P(i > j) of the N trajectories in `trajectory_steps` ([H, N, ...])."""
  return np.asarray(pairs(teacher, summarize_jit(teacher, trajectory_steps)))


# --- the per-step quantity ----------------------------------------------------------------

def test_quantities_read_what_they_name():
  step = TeacherStep(obs=jnp.zeros(4), next_obs=jnp.asarray([0.0, -2.0, 0.0, 0.0]),
                     action=jnp.asarray([3.0, -4.0]), reward=jnp.asarray(-1.5),
                     metrics={"angle": jnp.asarray(-0.25), "position": jnp.asarray(1.0)},
                     mask=jnp.ones(()), t=jnp.zeros((), jnp.int32))
  read = {"reward": -1.5, "abs:reward": 1.5, "action_norm": 5.0,  # ||(3, -4)|| = 5
          "obs:1": -2.0, "abs:obs:1": 2.0, "angle": -0.25, "abs:angle": 0.25}
  for text, value in read.items():
    quantity = parse_quantity(text, BALANCE)
    assert float(quantity(step)) == value, text
    assert str(quantity) == text


@pytest.mark.parametrize("text", ["speed", "obs:4", "obs:-1", "obs:x", "abs:nothing", ""])
def test_bad_quantity_names_the_field_the_value_and_what_is_allowed(text):
  with pytest.raises(ConfigError) as error:
    teacher_for(teacher="peak", teacher_quantity=text)
  message = str(error.value)
  for words in ("teacher_quantity", repr(text), "angle, position", "0 <= i < 4", "action_norm"):
    assert words in message, (words, message)


# --- non-Markovian teachers ---------------------------------------------------------------

def test_constraint_hand_values():
  teacher = teacher_for(teacher="constraint", teacher_quantity="abs:angle", teacher_threshold=0.1)
  assert teacher == Constraint(parse_quantity("abs:angle", BALANCE), 0.1)
  # Returns 3, 5, 3, 1; |angle| peaks 0.05, 0.2 (> 0.1: violated), 0.1 (not > 0.1), 0.3.
  # Non-violators {0, 2} beat violators {1, 3}; 0 vs 2 tie on return 3; 1 vs 3: 5 > 1.
  reward = [[1.0, 2.0, 1.0, 1.0], [2.0, 3.0, 2.0, 0.0]]
  angle = [[0.05, 0.0, -0.1, 0.3], [0.0, -0.2, 0.0, 0.0]]
  expected = [[0.5, 1.0, 0.5, 1.0],
              [0.0, 0.5, 0.0, 1.0],
              [0.5, 1.0, 0.5, 1.0],
              [0.0, 0.0, 0.0, 0.5]]
  np.testing.assert_array_equal(prefs(teacher, steps(reward, metrics={"angle": angle})),
                                expected)


def test_peak_hand_values_and_masked_steps():
  teacher = teacher_for(teacher="peak", teacher_quantity="reward")
  assert teacher == Peak(parse_quantity("reward", BALANCE))
  # Peaks: max(1, 4) = 4; max(2, 9) but the 9 is masked -> 2; max(4, 0) = 4.
  reward = [[1.0, 2.0, 4.0], [4.0, 9.0, 0.0]]
  mask = [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
  expected = [[0.5, 1.0, 0.5], [0.0, 0.5, 0.0], [0.5, 1.0, 0.5]]
  np.testing.assert_array_equal(prefs(teacher, steps(reward, mask)), expected)


def test_deadline_hand_values():
  teacher = teacher_for(teacher="deadline", teacher_quantity="reward", teacher_threshold=1.0,
                        teacher_deadline=3)
  assert teacher == Deadline(parse_quantity("reward", BALANCE), 1.0, 3)
  # First k (steps taken) with r >= 1, within 3 steps: [2, never (k = 4 > 3), 1, never].
  reward = [[0.0, 0.0, 1.5, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 5.0, 0.0, 0.0]]
  expected = [[0.5, 1.0, 0.0, 1.0],
              [0.0, 0.5, 0.0, 0.5],  # neither reaches: a tie
              [1.0, 1.0, 0.5, 1.0],
              [0.0, 0.5, 0.0, 0.5]]
  np.testing.assert_array_equal(prefs(teacher, steps(reward)), expected)
  # teacher_deadline = 0 means the horizon, episode_length = 8: column 1 then reaches at 4.
  assert teacher_for(teacher="deadline", teacher_threshold=1.0).deadline == 8
  late = prefs(teacher_for(teacher="deadline", teacher_threshold=1.0), steps(reward))
  assert late[1, 3] == 1.0 and late[3, 1] == 0.0


def test_steady_hand_values():
  teacher = teacher_for(teacher="steady", teacher_quantity="reward")
  # Quantities (2, 2, 2): variance 0.  (1, 3, 2): mean 2, (1 + 1 + 0) / 3 = 2/3.
  # (3, 2, 1): the same multiset, so the same 2/3: a tie.  (0, 4, 2): (4 + 4 + 0) / 3 = 8/3.
  reward = np.array([[2.0, 1.0, 3.0, 0.0], [2.0, 3.0, 2.0, 4.0], [2.0, 2.0, 1.0, 2.0]])
  summary = summarize_jit(teacher, steps(reward))
  np.testing.assert_allclose(Steady.variance(summary), [0.0, 2 / 3, 2 / 3, 8 / 3], rtol=1e-6)
  expected = [[0.5, 1.0, 1.0, 1.0],
              [0.0, 0.5, 0.5, 1.0],
              [0.0, 0.5, 0.5, 1.0],
              [0.0, 0.0, 0.0, 0.5]]
  np.testing.assert_array_equal(prefs(teacher, steps(reward)), expected)


def test_steady_is_accurate_for_a_large_mean():
  # q = 1000 +- 0.01: sum q^2 / T - mean^2 = 1e6 - 1e6 in float32 would be pure rounding
  # (float32 resolves 1e6 to 0.0625); Welford's update keeps the variance 1e-4.
  reward = 1000.0 + 0.01 * np.array([[1.0], [-1.0]] * 50)
  summary = summarize_jit(Steady(), steps(reward))
  np.testing.assert_allclose(Steady.variance(summary), [1e-4], rtol=1e-2)


def test_nonmarkov_preferences_depend_on_the_order_of_the_steps():
  """The same per-step rewards in another order: the oracle (any sum of per-step rewards)
  must call it a tie, the non-Markovian teachers do not."""
  # a: rewards (1, 1, -1, -1), running sum ("x_position") 1, 2, 1, 0
  # b: rewards (1, -1, 1, -1), running sum 1, 0, 1, 0          (same multiset of rewards)
  # c: rewards (-1, -1, 1, 1), running sum -1, -2, -1, 0
  reward = np.array([[1.0, 1.0, -1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, 1.0],
                     [-1.0, -1.0, 1.0]])
  position = np.cumsum(reward, axis=0)
  spec = EnvSpec("toy", 4, 1, ("x_position",), 4)
  trajectories = steps(reward, metrics={"x_position": position})
  np.testing.assert_array_equal(prefs(Oracle(), trajectories), np.full((3, 3), 0.5))

  # peak of the position: 2 > 1 > 0.
  peak = teacher_for(spec, teacher="peak", teacher_quantity="x_position")
  assert prefs(peak, trajectories)[0, 1] == 1.0 and prefs(peak, trajectories)[1, 2] == 1.0
  # constraint |position| <= 1.5: a goes to 2 and loses to b (returns tie at 0), and c
  # reaches |-2| > 1.5 too: a and c both violate and tie on return.
  constraint = teacher_for(spec, teacher="constraint", teacher_quantity="abs:x_position",
                           teacher_threshold=1.5)
  np.testing.assert_array_equal(prefs(constraint, trajectories)[0], [0.5, 0.0, 0.5])
  # deadline: reward >= 1 within 2 steps: a and b at step 1, c never (its 1s come at 3, 4).
  deadline = teacher_for(spec, teacher="deadline", teacher_quantity="reward",
                         teacher_threshold=1.0, teacher_deadline=2)
  np.testing.assert_array_equal(prefs(deadline, trajectories)[2], [0.0, 0.0, 0.5])


def test_constraint_sees_a_violation_the_reward_does_not():
  # Equal rewards; trajectory 1 pushes its action to norm 5 > 2 once: the oracle sees a
  # tie, the constraint teacher prefers the trajectory that stayed within the limit.
  action = np.zeros((3, 2, 2))
  action[1, 1] = [3.0, 4.0]
  trajectories = steps(np.ones((3, 2)), action=action)
  constraint = teacher_for(teacher="constraint", teacher_quantity="action_norm",
                           teacher_threshold=2.0)
  np.testing.assert_array_equal(prefs(Oracle(), trajectories), [[0.5, 0.5], [0.5, 0.5]])
  np.testing.assert_array_equal(prefs(constraint, trajectories), [[0.5, 1.0], [0.0, 0.5]])


# --- intransitive raters ------------------------------------------------------------------

def test_majority_of_raters_hand_values():
  # Raters over metrics (angle, position) with weights (1, 0), (0, 1), (1, 1):
  #   a: sums (2, 0): utilities (2, 0, 2);  b: sums (1, 1): utilities (1, 1, 2)
  #   a vs b: rater 0 a (2 > 1), rater 1 b (0 < 1), rater 2 tie (2 = 2, half a vote):
  #   votes 1.5 = K/2 -> 1/2.   a vs c (sums (0, 0), utilities 0): 2 + 0.5 + 1 = 2.5 > 1.5 -> 1.
  teacher = MajorityOfRaters(tuple(parse_quantity(n, BALANCE) for n in ("angle", "position")),
                             ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0)))
  summaries = {"sums": jnp.asarray([[2.0, 0.0], [1.0, 1.0], [0.0, 0.0]])}
  p = np.asarray(pairs(teacher, summaries))
  np.testing.assert_array_equal(p, [[0.5, 0.5, 1.0], [0.5, 0.5, 1.0], [0.0, 0.0, 0.5]])


def test_preset_raters_cycle(tmp_path):
  """balance preset: criteria c = (survival = sum r, upright = -sum |angle| / 0.2,
  centred = -sum |position| / 2.4), raters' emphasis (3/2, 1, 1/2), (1/2, 3/2, 1),
  (1, 1/2, 3/2) (cyclic).

  x: 2 steps, r = 1, |angle| = 0.1, |position| = 1.2 each  -> c = (2, -1, -1)
  y: 1 step,  r = 1, angle 0,       |position| = 2.4       -> c = (1,  0, -1)
  z: 1 step,  r = 1, |angle| = 0.2, position 0             -> c = (1, -1,  0)
  That is e_0, e_1, e_2 plus the common (1, -1, -1), which shifts each rater's utilities of
  all three by the same amount. So the utilities are, up to that shift,
    rater 0: x 3/2, y 1, z 1/2    (x > y > z)
    rater 1: x 1/2, y 3/2, z 1    (y > z > x)
    rater 2: x 1, y 1/2, z 3/2    (z > x > y)
  x vs y: raters 0, 2 -> x;  y vs z: raters 0, 1 -> y;  z vs x: raters 1, 2 -> z.
  The majority cycles x > y > z > x.
  """
  teacher = teacher_for(BALANCE._replace(episode_length=2), teacher="intransitive")
  assert teacher.weights == ((1.5, -5.0, -1.0 / 4.8), (0.5, -7.5, -1.0 / 2.4),
                             (1.0, -2.5, -1.5 / 2.4))
  reward = [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
  mask = [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
  angle = [[0.1, 0.0, -0.2], [-0.1, 0.0, 0.0]]
  position = [[1.2, -2.4, 0.0], [-1.2, 0.0, 0.0]]
  trajectories = steps(reward, mask, metrics={"angle": angle, "position": position})
  summary = summarize_jit(teacher, trajectories)
  utilities = np.asarray(jax.vmap(teacher.utilities)(summary)).T  # [rater, trajectory]
  np.testing.assert_array_equal(np.argsort(-utilities, axis=1), [[0, 1, 2], [1, 2, 0],
                                                                 [2, 0, 1]])
  p = prefs(teacher, trajectories)
  assert p[0, 1] == 1.0 and p[1, 2] == 1.0 and p[2, 0] == 1.0  # x > y > z > x
  # So every trajectory wins exactly one of its two games: equal win rates, no winner.
  rates = compute_winrates(teacher, summary, None, KEY).winrate
  np.testing.assert_array_equal(rates, [0.5, 0.5, 0.5])
  # The same raters from a utility file give the same teacher.
  path = tmp_path / "raters.json"
  path.write_text(json.dumps({"metrics": ["reward", "abs:angle", "abs:position"],
                              "weights": [list(row) for row in teacher.weights]}))
  assert teacher_for(BALANCE, teacher="intransitive", teacher_raters=str(path)) == teacher


def test_spatial_raters_cycle_when_every_episode_lasts():
  """'spatial' raters on point_reach: rater k weighs the sums of the action (a_x, a_y), the
  distance travelled, by the direction u_k at 2 pi k / 3: u_0 = (1, 0), u_1 = (-1/2, s),
  u_2 = (-1/2, -s), s = sqrt(3)/2.

  Three trajectories of 2 steps each, all lasting the whole horizon (no survival criterion
  could separate them), actions per step and their sums S:
    a: (0, 0), (0, 0)        S = (0, 0)   utilities (0, 0, 0)
    b: (1, 0), (1, 0)        S = (2, 0)   utilities (2, -1, -1)
    c: (1/2, 1), (1/2, 1)    S = (1, 2)   utilities (1, -1/2 + 2s, -1/2 - 2s) = (1, 1.23, -2.23)
  a vs b: rater 0 b (0 < 2); raters 1, 2 a (0 > -1)               -> a
  b vs c: rater 0 b (2 > 1); rater 1 c (-1 < 1.23); rater 2 b     -> b
  c vs a: raters 0, 1 c (1 > 0, 1.23 > 0); rater 2 a              -> c
  The majority cycles a > b > c > a, and each rater alone is transitive.
  """
  spec = EnvSpec("point_reach", 4, 2, ("distance",), 2)
  teacher = teacher_for(spec, teacher="intransitive", teacher_raters="spatial")
  assert [str(q) for q in teacher.quantities] == ["action:0", "action:1"]
  s = np.sqrt(3.0) / 2
  np.testing.assert_allclose(teacher.weights, [[1, 0], [-0.5, s], [-0.5, -s]], atol=1e-12)
  action = np.asarray([[[0, 0], [1, 0], [0.5, 1]]] * 2)  # [H = 2, N = 3, (x, y)]
  trajectories = steps(np.zeros((2, 3)), action=action)
  p = prefs(teacher, trajectories)
  assert p[0, 1] == 1.0 and p[1, 2] == 1.0 and p[2, 0] == 1.0, p
  rates = compute_winrates(teacher, summarize_jit(teacher, trajectories), None, KEY).winrate
  np.testing.assert_array_equal(rates, [0.5, 0.5, 0.5])
  # The weights of each coordinate sum to zero over the raters (the average rater does not
  # care), for any odd K.
  for k in (3, 5, 9):
    np.testing.assert_allclose(np.sum(spatial_weights(k), axis=0), 0.0, atol=1e-9)
  # An env without a plane is refused, naming the field and the envs that have one.
  with pytest.raises(ConfigError, match="teacher_raters.*'spatial'.*env 'balance'.*point_reach"):
    teacher_for(teacher="intransitive", teacher_raters="spatial")


def test_action_quantity_reads_one_entry_and_is_checked():
  step = TeacherStep(obs=jnp.zeros(4), next_obs=jnp.zeros(4),
                     action=jnp.asarray([0.5, -0.25]), reward=jnp.zeros(()), metrics={},
                     mask=jnp.ones(()), t=jnp.zeros((), jnp.int32))
  spec = EnvSpec("point_reach", 4, 2, ("distance",), 2)
  assert float(parse_quantity("action:1", spec)(step)) == -0.25
  assert float(parse_quantity("abs:action:1", spec)(step)) == 0.25
  with pytest.raises(ConfigError, match="indexes entry 2 of an action of size 2"):
    parse_quantity("action:2", spec)


def test_preset_weights():
  # K = 3: the cyclic permutations of (3/2, 1, 1/2).
  assert preset_weights(3) == [[1.5, 1.0, 0.5], [0.5, 1.5, 1.0], [1.0, 0.5, 1.5]]
  # K = 7: spread on the same circle; every weight positive and each criterion's weights
  # averaging exactly 1, so the mean utility is the sum of the criteria.
  weights = np.asarray(preset_weights(7))
  assert weights.shape == (7, 3) and weights.min() > 0.4
  np.testing.assert_allclose(weights.mean(axis=0), 1.0, atol=1e-9)


def test_every_preset_builds_against_its_env():
  """Each preset names only what its env reports (building checks every name)."""
  assert set(PRESETS) == set(BRAX_SPECS)
  for name, spec in BRAX_SPECS.items():
    teacher = teacher_for(spec, teacher="intransitive", teacher_num_raters=5)
    assert len(teacher.weights) == 5 and len(teacher.quantities) == len(PRESETS[name]) == 3
  # One contract check suffices: every preset is the same class with other numbers.
  spec = BRAX_SPECS["halfcheetah"]
  validate_teacher(teacher_for(spec, teacher="intransitive", teacher_num_raters=5), num=6,
                   horizon=3, obs_size=spec.observation_size, action_size=spec.action_size,
                   metric_names=spec.metric_names)


def test_rater_utility_naming_a_missing_metric_is_refused(tmp_path):
  path = tmp_path / "raters.json"
  path.write_text(json.dumps({"metrics": ["angle", "speed"], "weights": [[1, 0], [0, 1], [1, 1]]}))
  with pytest.raises(ConfigError) as error:
    teacher_for(teacher="intransitive", teacher_raters=str(path))
  for words in ("teacher_raters", "'speed'", "metrics[1]", "angle, position"):
    assert words in str(error.value), (words, str(error.value))


def test_malformed_raters_file_reports_the_line(tmp_path):
  path = tmp_path / "raters.json"
  path.write_text('{\n  "metrics": ["angle"],\n  "weights": [[1], [2] [3]]\n}\n')
  with pytest.raises(ConfigError, match=r"teacher_raters.*raters\.json.*not valid JSON: line 3"):
    teacher_for(teacher="intransitive", teacher_raters=str(path))


@pytest.mark.parametrize("content, words", [
    ({"metrics": ["angle"], "weights": [[1], [2]]}, "'weights' must be K x M = 3 x 1"),
    ({"metrics": ["angle"], "weights": [[1], [2], [3, 4]]}, "'weights[2]' must have 1 entries"),
    ({"metrics": ["angle"], "weights": [[1], ["x"], [3]]}, "'weights[1][0]' = 'x'"),
    ({"metrics": [], "weights": []}, "'metrics' must be a non-empty list"),
    ({"metrics": ["angle"]}, "'weights' is missing"),
    ({"metrics": ["angle"], "weights": [[1]] * 3, "weight": 1}, "unknown field(s) ['weight']"),
])
def test_bad_raters_file_names_the_field(tmp_path, content, words):
  path = tmp_path / "raters.json"
  path.write_text(json.dumps(content))
  with pytest.raises(ConfigError) as error:
    teacher_for(teacher="intransitive", teacher_raters=str(path))
  assert words in str(error.value) and "teacher_raters" in str(error.value)


def test_raters_file_missing_or_env_without_preset(tmp_path):
  with pytest.raises(ConfigError, match="no such file"):
    teacher_for(teacher="intransitive", teacher_raters=str(tmp_path / "absent.json"))
  spec = EnvSpec("reacher", 11, 2, ("reward_dist",), 50)
  with pytest.raises(ConfigError, match="teacher_raters.*no rater preset for env 'reacher'"):
    teacher_for(spec, teacher="intransitive")


# --- matrix game --------------------------------------------------------------------------

def test_matrix_game_hand_values_and_last_valid_outcome():
  teacher = spo_jax.make_teacher(spo_jax.Config(env="matrix_game", teacher="matrix_game",
                                                teacher_table="cycle3"))  # spec from the env
  assert teacher == PayoffTable(TABLES["cycle3"])
  # Outcomes at the last valid step: 0, 2 (the 1 after it is masked), 1; P = T[o_a, o_b].
  outcome = [[0.0, 2.0, 0.0], [0.0, 1.0, 1.0]]
  mask = [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
  trajectories = steps(np.zeros((2, 3)), mask, metrics={"outcome": outcome})
  np.testing.assert_array_equal(summarize_jit(teacher, trajectories)["outcome"], [0, 2, 1])
  np.testing.assert_allclose(prefs(teacher, trajectories),
                             [[0.5, 0.2, 0.9], [0.8, 0.5, 0.3], [0.1, 0.7, 0.5]])


@pytest.mark.parametrize("name", sorted(TABLES))
def test_preset_tables_and_their_minimax_winners(name):
  check_table(np.asarray(TABLES[name]), name)
  # The stated Minimax Winner is the linear program's, and no pure outcome beats it:
  # sum_i p_i (T[i, j] - 1/2) >= 0 for every j.
  p = minimax_winner(TABLES[name])
  np.testing.assert_allclose(p, MINIMAX_WINNERS[name], atol=1e-6)
  assert np.all(p @ (np.asarray(TABLES[name]) - 0.5) >= -1e-9)
  if name == "cycle3":
    assert np.ptp(p) > 0.2  # (2/9, 3/9, 4/9): a non-uniform mixture


@pytest.mark.parametrize("table, ext, words", [
    ([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]], ".npy", "K x K matrix with K >= 2, got shape (2, 3)"),
    ([[0.5, 1.2], [-0.2, 0.5]], ".json", "entry (0, 1) = 1.2 lies outside [0, 1]"),
    ([[0.5, 0.6], [0.6, 0.5]], ".csv", "entries (0, 1) = 0.6 and (1, 0) = 0.6 sum to 1.2"),
    ([[0.4, 0.5], [0.5, 0.6]], ".json", "diagonal entry (0, 0) = 0.4 must be 1/2"),
])
def test_bad_tables_are_refused_with_the_entry(tmp_path, table, ext, words):
  path = str(tmp_path / f"table{ext}")
  if ext == ".npy":
    np.save(path, np.asarray(table))
  elif ext == ".csv":
    np.savetxt(path, np.asarray(table), delimiter=",")
  else:
    with open(path, "w") as file:
      json.dump(table, file)
  with pytest.raises(ConfigError) as error:
    spo_jax.make_teacher(spo_jax.Config(env="matrix_game", teacher="matrix_game",
                                        teacher_table=path), GAME)
  assert words in str(error.value) and "teacher_table" in str(error.value), str(error.value)


def test_table_file_accepted_and_other_refusals(tmp_path):
  path = tmp_path / "rps.csv"
  np.savetxt(path, np.asarray(TABLES["rps"]), delimiter=",")
  config = spo_jax.Config(env="matrix_game", teacher="matrix_game", teacher_table=str(path))
  assert spo_jax.make_teacher(config, GAME) == PayoffTable(TABLES["rps"])
  with pytest.raises(ConfigError, match="teacher_table.*neither a preset"):
    spo_jax.make_teacher(config.replace(teacher_table="rock"), GAME)
  with pytest.raises(ConfigError, match="metric 'outcome'.*use env 'matrix_game'"):
    spo_jax.make_teacher(config, BALANCE)
  with pytest.raises(ConfigError, match="table has 3 outcomes but the env MatrixGame produces 4"):
    spo_jax.make_teacher(config, GAME).check_env(MatrixGame(num_outcomes=4))


def test_matrix_game_env_reads_the_one_hot_action():
  env = PACKAGE_ENVS["matrix_game"]()
  state = env.reset(KEY)
  assert float(state.metrics["outcome"]) == 0.0 and state.obs.tolist() == [1.0]
  # Discrete actions: the env receives a one-hot vector [K = 3]; the outcome is its index.
  assert env.discrete_actions and env.action_size == 3
  actions = jnp.eye(3)[jnp.asarray([0, 2, 1, 2])]
  after = jax.jit(jax.vmap(env.step, (None, 0)))(state, actions)
  np.testing.assert_array_equal(after.metrics["outcome"], [0, 2, 1, 2])
  np.testing.assert_array_equal(after.done, 1.0)
  np.testing.assert_array_equal(after.reward, 0.0)
  assert set(after.metrics) == set(state.metrics)


# --- every teacher: contract, and sampled labels that average to the soft ones ------------

ZOO = {
    "constraint": dict(teacher="constraint", teacher_quantity="abs:angle", teacher_threshold=1.0),
    "peak": dict(teacher="peak", teacher_quantity="obs:2"),
    "deadline": dict(teacher="deadline", teacher_quantity="action_norm", teacher_threshold=0.5,
                     teacher_deadline=4),
    "steady": dict(teacher="steady", teacher_quantity="abs:reward"),
    "intransitive": dict(teacher="intransitive"),
    "mistake(peak)": dict(teacher="mistake(peak)", teacher_quantity="position",
                          teacher_epsilon=0.2),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_keeps_the_contract(name):
  validate_teacher(teacher_for(**ZOO[name]), obs_size=4, action_size=1,
                   metric_names=BALANCE.metric_names)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_matrix_game_keeps_the_contract(name):
  teacher = teacher_for(GAME, teacher="matrix_game", teacher_table=name)
  validate_teacher(teacher, obs_size=1, action_size=1, metric_names=GAME.metric_names)


def _mean_sampled_winrates(teacher, summaries, num_keys):
  keys = jax.random.split(jax.random.PRNGKey(7), num_keys)
  sampled = jax.lax.map(
      lambda key: compute_winrates(teacher, summaries, None, key, labels="sampled").winrate,
      keys)
  return jnp.mean(sampled, axis=0)


mean_sampled_winrates = jax.jit(_mean_sampled_winrates, static_argnums=(0, 2))


@pytest.mark.parametrize("kind", ["mistake(constraint)", "matrix_game"])
def test_sampled_labels_average_to_the_soft_win_rates(kind):
  if kind == "matrix_game":
    teacher = PayoffTable(TABLES["cycle3"])
    summaries = {"outcome": jnp.asarray([0, 1, 2, 0, 2, 1], jnp.int32)}
  else:
    teacher = Mistake(Constraint(), 0.2)
    summaries = {"violated": jnp.asarray([False, True, False, True, False, False]),
                 "return": jnp.asarray([1.0, 5.0, 2.0, 0.0, 2.0, -1.0])}
  soft = compute_winrates(teacher, summaries, None, KEY).winrate
  # 2000 draws of a mean of 5 Bernoulli labels: standard error <= sqrt(1/4 / 5 / 2000)
  # = 0.005; 0.025 is 5 of them.
  np.testing.assert_allclose(mean_sampled_winrates(teacher, summaries, 2000), soft, atol=0.025)
  assert float(jnp.max(soft) - jnp.min(soft)) > 0.1  # not all ties


# --- end to end: one training iteration per family ----------------------------------------

TINY = spo_jax.Config(
    num_envs=8, episode_length=8, num_minibatches=2, update_epochs=1, num_eval_envs=2,
    policy_hidden_sizes=(8,), value_hidden_sizes=(8,), max_iterations=1, eval_every=1,
    num_timesteps=10**9)


@pytest.mark.parametrize("changes", [
    dict(env="balance", teacher="constraint", teacher_quantity="abs:angle",
         teacher_threshold=0.1),
    dict(env="point_reach", teacher="intransitive"),
    dict(env="matrix_game", teacher="matrix_game", episode_length=1, teacher_table="cycle3"),
], ids=["nonmarkov", "intransitive", "matrix_game"])
def test_one_training_iteration(changes):
  result = spo_jax.train(TINY.replace(**changes))
  assert result.metrics["train/total_queries"] == 28  # N (N - 1) / 2 pairs, N = 8
  assert all(np.isfinite(v) for v in result.metrics.values()), result.metrics
