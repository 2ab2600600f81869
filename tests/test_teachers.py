"""Tests for spo_jax/teachers.py: built-in teachers, `summarize`, and the contract check.

The broken teachers below are the mistakes a user is likely to make; `validate_teacher` must
name the rule that is broken and the pair that breaks it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spo_jax.teachers import (
    BradleyTerry,
    Oracle,
    TeacherContractError,
    TeacherStep,
    summarize,
    validate_teacher,
)
from spo_jax.winrate import compute_winrates

KEY = jax.random.PRNGKey(0)


def ret(value):
  return {"return": jnp.asarray(value, jnp.float32)}


def returns(*values):
  return {"return": jnp.asarray(values, jnp.float32)}


def steps(reward, mask, action=None):
  """TeacherStep [H, N, ...] from rewards [H, N], masks [H, N] and actions [H, N, A]."""
  reward = jnp.asarray(reward, jnp.float32)
  horizon, num = reward.shape
  action = jnp.zeros((horizon, num, 1)) if action is None else jnp.asarray(action, jnp.float32)
  obs = jnp.zeros((horizon, num, 3))
  t = jnp.broadcast_to(jnp.arange(horizon, dtype=jnp.int32)[:, None], (horizon, num))
  return TeacherStep(obs=obs, next_obs=obs, action=action, reward=reward, metrics={},
                     mask=jnp.asarray(mask, jnp.float32), t=t)


# --- built-in teachers ------------------------------------------------------------------

def test_oracle_hand_values():
  oracle = Oracle()
  # P = (1 + sign(R_a - R_b)) / 2:  sign(3 - 1) = 1 -> 1;  sign(1 - 3) = -1 -> 0;  tie -> 1/2
  assert float(oracle.compare(ret(3.0), ret(1.0), KEY)) == 1.0
  assert float(oracle.compare(ret(1.0), ret(3.0), KEY)) == 0.0
  assert float(oracle.compare(ret(2.0), ret(2.0), KEY)) == 0.5


def test_bradley_terry_hand_values():
  teacher = BradleyTerry(beta=2.0, scale=4.0)
  # sigmoid(beta (R_a - R_b) / scale) = sigmoid(2 * (3 - 1) / 4) = sigmoid(1)
  #   = 1 / (1 + e^-1) = 1 / 1.367879 = 0.731059;   the reverse: sigmoid(-1) = 0.268941
  np.testing.assert_allclose(teacher.compare(ret(3.0), ret(1.0), KEY), 0.731059, rtol=1e-5)
  np.testing.assert_allclose(teacher.compare(ret(1.0), ret(3.0), KEY), 0.268941, rtol=1e-5)
  assert float(teacher.compare(ret(3.0), ret(3.0), KEY)) == 0.5  # sigmoid(0)
  # A larger scale makes the same difference less decisive: sigmoid(2 * 2 / 400) = 0.502500
  np.testing.assert_allclose(BradleyTerry(beta=2.0, scale=400.0).compare(ret(3.0), ret(1.0), KEY),
                             0.5025, rtol=1e-5)


def test_oracle_summary_is_the_return_over_valid_steps():
  # Column 0 is valid for 2 steps, column 1 for 1: returns [1 + 3, 2] = [4, 2];
  # the masked rewards (5, 4, 6) never reach `update`.
  reward = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
  mask = [[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
  summary = jax.jit(summarize, static_argnums=0)(Oracle(), steps(reward, mask))
  np.testing.assert_allclose(summary["return"], [4.0, 2.0])


@pytest.mark.parametrize("teacher", [Oracle(), BradleyTerry(), BradleyTerry(beta=3.0, scale=0.5)])
def test_builtin_teachers_pass_the_contract(teacher):
  validate_teacher(teacher)  # random trajectories, with ties
  validate_teacher(teacher, returns(-1e3, 0.0, 0.0, 1e-3, 1e3))  # extreme gaps, exact ties


# --- broken teachers --------------------------------------------------------------------

class AlwaysSeventy(Oracle):
  """P = 0.7 whatever the pair: says 0.7 for a trajectory against itself."""

  def compare(self, a, b, key):
    return jnp.full((), 0.7)


class Lopsided(Oracle):
  """1/2 on ties, but 0.7 both ways otherwise: P_ab + P_ba = 1.4."""

  def compare(self, a, b, key):
    return jnp.where(a["return"] == b["return"], 0.5, 0.7)


class Doubled(Oracle):
  """Twice the Oracle: 'probabilities' 0, 1 and 2."""

  def compare(self, a, b, key):
    return 2.0 * super().compare(a, b, key)


class ZeroOverZero(Oracle):
  """(1 + d / |d|) / 2 with d = R_a - R_b: 0/0 = nan on a tie, including a against a."""

  def compare(self, a, b, key):
    d = a["return"] - b["return"]
    return 0.5 * (1.0 + d / jnp.abs(d))


class NoCompare:
  def init(self):
    return {"return": jnp.zeros(())}

  def update(self, summary, step):
    return {"return": summary["return"] + step.reward}


def _message(teacher, summaries=None):
  with pytest.raises(TeacherContractError) as info:
    validate_teacher(teacher, summaries)
  return str(info.value)


def test_constant_teacher_fails_on_self_comparison():
  # The diagonal is checked before antisymmetry: P(a, a) = 0.7 is reported first.
  message = _message(AlwaysSeventy())
  assert "AlwaysSeventy" in message
  assert "compare(a, a) = 0.7 for trajectory 0" in message
  assert "itself must give 1/2" in message


def test_non_antisymmetric_teacher_names_the_pair():
  # Summaries [0, 1, 2]: the first broken pair in row order is (0, 1): 0.7 + 0.7 = 1.4.
  message = _message(Lopsided(), returns(0.0, 1.0, 2.0))
  assert "antisymmetry" in message
  assert "pair (0, 1)" in message
  assert "0.7 + 0.7 = 1.4" in message


def test_teacher_above_one_is_not_a_probability():
  # Summaries [0, 1]: P = 2 * [[1/2, 0], [1, 1/2]] = [[1, 0], [2, 1]]; (1, 0) is the first
  # entry outside [0, 1].
  message = _message(Doubled(), returns(0.0, 1.0))
  assert "outside [0, 1]" in message
  assert "compare(a, b) = 2 for pair (1, 0)" in message


def test_nan_teacher_is_not_finite():
  message = _message(ZeroOverZero(), returns(0.0, 1.0))
  assert "compare(a, b) = nan for pair (0, 0)" in message
  assert "not a finite number" in message


def test_teacher_without_compare():
  message = _message(NoCompare())
  assert "NoCompare" in message
  assert "no 'compare' method" in message


class ReadsDistance(Oracle):
  """Folds in a metric of the environment; PointReach has `distance`, Balance does not."""

  def init(self):
    return {"return": jnp.zeros(())}

  def update(self, summary, step):
    return {"return": summary["return"] - step.metrics["distance"]}


def test_teacher_that_reads_a_missing_metric():
  with pytest.raises(TeacherContractError) as info:
    validate_teacher(ReadsDistance(), metric_names=("angle", "position"))
  message = str(info.value)
  assert "init/update failed on sample steps" in message
  assert "KeyError" in message and "distance" in message
  validate_teacher(ReadsDistance(), metric_names=("distance",))


class AbstainsOnNegatives(Oracle):
  """No label when both returns are negative, and nonsense (0.9 both ways) on those pairs."""

  def compare(self, a, b, key):
    both_negative = (a["return"] < 0) & (b["return"] < 0) & (a["return"] != b["return"])
    return jnp.where(both_negative, 0.9, super().compare(a, b, key))

  def abstain(self, a, b):
    return (a["return"] < 0) & (b["return"] < 0)


def test_antisymmetry_is_only_required_where_the_teacher_answers():
  # Pair (0, 1) is -2 vs -1: abstained on, so 0.9 + 0.9 is not a violation.
  validate_teacher(AbstainsOnNegatives(), returns(-2.0, -1.0, 0.0, 3.0))


# --- a user's own teacher ---------------------------------------------------------------

class GentleTeacher:
  """Prefers the trajectory whose largest |action| is smaller. A plain class (no Teacher base,
  no `abstain`), written with jax.numpy only, as a user would."""

  def init(self):
    return {"max_action": jnp.zeros(())}

  def update(self, summary, step):
    return {"max_action": jnp.maximum(summary["max_action"], jnp.max(jnp.abs(step.action)))}

  def compare(self, a, b, key):
    del key
    return 0.5 * (1.0 + jnp.sign(b["max_action"] - a["max_action"]))


def test_user_teacher_as_a_plain_class():
  teacher = GentleTeacher()
  validate_teacher(teacher)

  # Actions [H=3, N=2, A=2]; env 0 is valid for 2 steps, env 1 for 3.
  action = [[[0.1, -0.2], [0.3, 0.0]],
            [[-0.5, 0.4], [0.1, -0.9]],
            [[0.9, 0.0], [0.2, 0.2]]]
  mask = [[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]]
  summary = jax.jit(summarize, static_argnums=0)(teacher, steps(jnp.zeros((3, 2)), mask, action))
  # env 0: max(|0.1|, |-0.2|, |-0.5|, |0.4|) = 0.5 (the 0.9 at t = 2 is after its end);
  # env 1: max(0.3, 0.0, 0.1, 0.9, 0.2, 0.2) = 0.9
  np.testing.assert_allclose(summary["max_action"], [0.5, 0.9])

  # It plugs into the win rates as it is: env 0 is gentler, so w = [1, 0].
  rates = compute_winrates(teacher, summary, None, KEY)
  np.testing.assert_allclose(rates.winrate, [1.0, 0.0])
  assert int(rates.num_labels) == 1  # no `abstain` method: every query is answered



# --- wrappers (the worked examples of docs/teachers.md) ---------------------------------

def test_mistake_mixes_with_the_opposite_answer():
  from spo_jax.teachers import Mistake

  # Oracle says 1 for the better trajectory; eps = 0.2: 0.8 * 1 + 0.2 * 0 = 0.8.
  teacher = Mistake(Oracle(), 0.2)
  assert float(teacher.compare(ret(5.0), ret(1.0), KEY)) == pytest.approx(0.8)
  assert float(teacher.compare(ret(1.0), ret(5.0), KEY)) == pytest.approx(0.2)
  assert float(teacher.compare(ret(2.0), ret(2.0), KEY)) == pytest.approx(0.5)
  validate_teacher(teacher)


def test_myopic_weighs_recent_steps_most_and_order_matters():
  from spo_jax.teachers import Myopic

  # gamma = 0.5, rewards (1, 0, 0): R~ = 1 * 0.5^2 = 0.25; rewards (0, 0, 1): R~ = 1.
  # Same multiset of rewards, different order: the later reward wins; the oracle ties.
  teacher = Myopic(Oracle(), 0.5)
  folded = summarize(teacher, steps([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], np.ones((3, 2))))
  np.testing.assert_allclose(folded["return"], [0.25, 1.0])
  a = {"return": folded["return"][0]}
  b = {"return": folded["return"][1]}
  assert float(teacher.compare(a, b, KEY)) == 0.0
  plain = summarize(Oracle(), steps([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], np.ones((3, 2))))
  np.testing.assert_allclose(plain["return"], [1.0, 1.0])
  # Masked steps are not folded: (1, 1, [9 masked]) with gamma 0.5 gives 0.5 * 1 + 1 = 1.5.
  masked = summarize(teacher, steps([[1.0], [1.0], [9.0]], [[1.0], [1.0], [0.0]]))
  np.testing.assert_allclose(masked["return"], [1.5])


def test_equal_ties_close_returns_and_skip_abstains_on_poor_pairs():
  from spo_jax.teachers import Equal, Skip

  equal = Equal(BradleyTerry(beta=1.0, scale=1.0), margin=0.5)
  # |2.0 - 1.8| = 0.2 < 0.5: tie; |3 - 1| = 2: sigmoid(2) = 0.8808.
  assert float(equal.compare(ret(2.0), ret(1.8), KEY)) == 0.5
  assert float(equal.compare(ret(3.0), ret(1.0), KEY)) == pytest.approx(0.880797, abs=1e-6)
  skip = Skip(Oracle(), threshold=3.0)
  # max(2, 1) = 2 < 3: no label; max(5, 1) = 5: labelled, P = 1.
  assert bool(skip.abstain(ret(2.0), ret(1.0)))
  assert not bool(skip.abstain(ret(5.0), ret(1.0)))
  assert float(skip.compare(ret(5.0), ret(1.0), KEY)) == 1.0
  for teacher in (equal, skip):
    validate_teacher(teacher)


def test_win_rates_with_a_skipping_teacher_leave_abstentions_out():
  from spo_jax.teachers import Skip

  # Returns (5, 2, 1), threshold 3: pair (1, 2) is skipped (max 2 < 3).
  # w_0 = (1 + 1) / 2 = 1; w_1 = P(1 > 0) = 0 over one labelled opponent; w_2 = 0 likewise.
  rates = compute_winrates(Skip(Oracle(), 3.0), returns(5.0, 2.0, 1.0), None, KEY)
  np.testing.assert_allclose(rates.winrate, [1.0, 0.0, 0.0])
  assert int(rates.num_queries) == 3 and int(rates.num_labels) == 2


def test_teacher_expressions_build_the_wrapped_teacher():
  import spo_jax
  from spo_jax.config import ConfigError
  from spo_jax.teachers import EnvSpec, Mistake, Myopic, make_teacher, parse_teacher

  spec = EnvSpec("balance", 4, 1, ("angle", "position"), 8)
  assert parse_teacher("mistake(myopic(oracle))") == ["mistake", "myopic", "oracle"]
  assert parse_teacher("skip") == ["skip", "oracle"]
  built = make_teacher(spo_jax.Config(teacher="mistake(myopic(bradley_terry))",
                                      teacher_epsilon=0.3, teacher_gamma=0.7), spec)
  assert built == Mistake(Myopic(BradleyTerry(), 0.7), 0.3)
  for bad, words in [("oracle(peak)", "wraps nothing"), ("equal(peak)", "return-based"),
                     ("mistake(", "not a teacher expression"), ("orcale", "not a known")]:
    with pytest.raises(ConfigError, match=words):
      parse_teacher(bad)


# -------------------------------------------------------------------------------------
# The registry and the protocol (docs/design.md, "Adding a plug-in")
# -------------------------------------------------------------------------------------

import dataclasses  # noqa: E402

import spo_jax  # noqa: E402
from spo_jax import teachers as teachers_lib  # noqa: E402
from spo_jax.errors import ConfigError  # noqa: E402

TINY = spo_jax.preset("point_reach").replace(
    num_envs=8, episode_length=8, num_minibatches=2, update_epochs=1, num_eval_envs=4,
    policy_hidden_sizes=(8,), value_hidden_sizes=(8,), num_timesteps=10**9, max_iterations=2,
    eval_every=1)


@dataclasses.dataclass(frozen=True)
class CloserWins(teachers_lib.Teacher):
  """A throwaway teacher: prefers the trajectory that ended closer to its target (the env's
  'distance' metric at the last valid step)."""

  def init(self):
    return {"distance": jnp.zeros(())}

  def update(self, summary, step):
    return {"distance": step.metrics["distance"]}

  def compare(self, a, b, key):
    del key
    return jnp.where(a["distance"] < b["distance"], 1.0,
                     jnp.where(a["distance"] > b["distance"], 0.0, 0.5))


def test_a_registered_teacher_is_validated_wrapped_and_trains():
  teachers_lib.register_teacher("closer_wins", lambda cfg, spec: CloserWins(),
                                description="test: the closer end wins")
  try:
    config = TINY.replace(teacher="mistake(closer_wins)", teacher_epsilon=0.1)
    spo_jax.validate(config)
    # myopic reads the return: the registry knows closer_wins is not return-based.
    with pytest.raises(ConfigError, match="return-based"):
      spo_jax.validate(TINY.replace(teacher="myopic(closer_wins)"))
    result = spo_jax.train(config)
    assert result.metrics["iteration"] == 2
    assert result.metrics["train/total_queries"] == 2 * 8 * 7 // 2
  finally:
    teachers_lib.TEACHERS.unregister("closer_wins")
  with pytest.raises(ConfigError, match="not a known teacher"):
    spo_jax.validate(TINY.replace(teacher="closer_wins"))


class _NoCompare:
  def init(self):
    return {}

  def update(self, summary, step):
    return summary


@pytest.mark.parametrize("teacher, member", [
    (_NoCompare(), "'compare'"),
    (dataclasses.replace(CloserWins()), None),  # a good one passes
    (type("BadAbstain", (CloserWins,), {"abstain": 3})(), "'abstain'"),
    (type("BadOutcomes", (CloserWins,), {"num_outcomes": "three"})(), "'num_outcomes'"),
    (type("BadFit", (CloserWins,), {"fit_metrics": [1.0]})(), "'fit_metrics'"),
    (type("BadTable", (CloserWins,), {"table": ((0.5, 0.5),)})(), "'table'"),
])
def test_a_teacher_that_breaks_the_protocol_is_refused_in_one_line(teacher, member):
  if member is None:
    teachers_lib.check_teacher_protocol(teacher)
    return
  with pytest.raises(TeacherContractError, match=member) as error:
    teachers_lib.check_teacher_protocol(teacher)
  assert "\n" not in str(error.value)
  # train refuses it before compiling anything.
  with pytest.raises(TeacherContractError, match=member):
    spo_jax.build(TINY, teacher=teacher)


def test_hook_defaults_are_declared_in_one_place():
  plain = CloserWins()
  assert set(teachers_lib.TEACHER_HOOKS) == {"abstain", "check_env", "num_outcomes", "table",
                                             "fit_metrics", "return_based"}
  assert not bool(teachers_lib.hook(plain, "abstain")(plain.init(), plain.init()))
  assert teachers_lib.hook(plain, "check_env")(None) is None
  assert teachers_lib.hook(plain, "table") is None
  assert teachers_lib.hook(teachers_lib.Oracle(), "return_based") is True
  with pytest.raises(KeyError, match="not a teacher hook"):
    teachers_lib.hook(plain, "no_such_hook")


def test_ask_folds_the_pair_index_into_the_key():
  """`ask` is what every site uses: the key of pair `index` is fold_in(key, index)."""

  @dataclasses.dataclass(frozen=True)
  class KeyEcho(CloserWins):
    def compare(self, a, b, key):
      return jax.random.uniform(key)

  key = jax.random.PRNGKey(3)
  s = KeyEcho().init()
  p, abstain = teachers_lib.ask(KeyEcho(), s, s, key, 7)
  assert p.dtype == jnp.float32 and not bool(abstain)
  assert float(p) == float(jax.random.uniform(jax.random.fold_in(key, 7)))
