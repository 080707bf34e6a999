"""vCache's decision rule (Schroeder et al., "vCache: Verified Semantic Prompt Caching", arXiv
2502.03771; the reference code's `VerifiedDecisionPolicy`), per cached entry. Design notes:
docs/notes/cache.md#the-policy."""

from __future__ import annotations

import enum
import math
import random
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import expit
from scipy.stats import norm

PRIORS: tuple[tuple[float, int], ...] = ((0.0, 0), (1.0, 1))
EPSILON_GRID = np.linspace(1e-6, 1 - 1e-6, 50)
Z_GRID = norm.ppf(1 - EPSILON_GRID)
# Var(t̂) for perfectly separated observations, by number of observations (priors included):
# the reference implementation's offline calibration.
SEPARATED_VARIANCE = {
    6: 0.035445,
    7: 0.028285,
    8: 0.026436,
    9: 0.021349,
    10: 0.019371,
    11: 0.012615,
    12: 0.011433,
    13: 0.010228,
    14: 0.009963,
    15: 0.009253,
    16: 0.011674,
    17: 0.013015,
    18: 0.010897,
    19: 0.011841,
    20: 0.013081,
    21: 0.010585,
    22: 0.014255,
    23: 0.012058,
    24: 0.013002,
    25: 0.011715,
    26: 0.00839,
    27: 0.008839,
    28: 0.010628,
    29: 0.009899,
    30: 0.008033,
    31: 0.00457,
    32: 0.007335,
    33: 0.008932,
    34: 0.00729,
    35: 0.007445,
    36: 0.00761,
    37: 0.011423,
    38: 0.011233,
    39: 0.006783,
    40: 0.005233,
    41: 0.00872,
    42: 0.010005,
    43: 0.01199,
    44: 0.00977,
    45: 0.01891,
    46: 0.01513,
    47: 0.02109,
    48: 0.01531,
}


class Action(str, enum.Enum):
    explore = "explore"
    exploit = "exploit"


@dataclass(frozen=True)
class Fit:
    t_hat: float
    gamma: float
    var_t: float


@dataclass(frozen=True)
class Decision:
    action: Action
    tau: float
    fit: Fit | None


def separated_variance(n: int) -> float:
    if n in SEPARATED_VARIANCE:
        return SEPARATED_VARIANCE[n]
    return SEPARATED_VARIANCE[
        min(SEPARATED_VARIANCE) if n < min(SEPARATED_VARIANCE) else max(SEPARATED_VARIANCE)
    ]


def fit(observations: Sequence[tuple[float, int]]) -> Fit | None:
    """The logistic fit of an entry's observations; None when it cannot be made (explore then)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    s = np.asarray([o[0] for o in observations], dtype=np.float64)
    y = np.asarray([o[1] for o in observations], dtype=np.int64)
    if len(set(y.tolist())) < 2:
        return None
    X = np.column_stack([np.ones_like(s), s])
    model = LogisticRegression(
        C=np.inf, solver="lbfgs", tol=1e-8, max_iter=1000, fit_intercept=False
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            model.fit(X, y)
    except ValueError:
        return None
    intercept, gamma = (float(v) for v in model.coef_[0])
    gamma = max(gamma, 1e-6)
    t_hat = float(np.clip(-intercept / gamma, 0.0, 1.0))
    if s[y == 1].min() > s[y == 0].max():  # perfectly separated: the MLE diverges
        var_t = separated_variance(len(s))
    else:
        p = expit(X @ np.array([intercept, gamma]))
        hessian = X.T @ ((p * (1 - p))[:, None] * X)
        try:
            cov = np.linalg.inv(hessian)
        except np.linalg.LinAlgError:
            return None
        grad = np.array([-1.0 / gamma, intercept / gamma**2])
        var_t = max(0.0, float(grad @ cov @ grad))
        if not math.isfinite(var_t):
            return None
    return Fit(round(t_hat, 3), round(gamma, 3), var_t)


def tau(similarity: float, delta: float, f: Fit) -> float:
    """The exploration probability for a prompt at `similarity` to the entry, under bound δ."""
    t_prime = np.clip(f.t_hat + Z_GRID * math.sqrt(f.var_t), 0.0, 1.0)
    alpha = (1 - EPSILON_GRID) * expit(f.gamma * (similarity - t_prime))
    with np.errstate(divide="ignore"):
        taus = 1 - delta / (1 - alpha)
    return round(float(np.min(taus)), 5)


class VerifiedPolicy:
    """vCache's explore/exploit choice. `rng` draws u (inject a seeded one in tests)."""

    def __init__(self, min_observations: int = 4, rng: random.Random | None = None):
        self.min_observations = min_observations
        self.rng = rng or random.Random()

    def refit(self, observations: Sequence[tuple[float, int]]) -> Fit | None:
        """The fit `decide` will use for these observations (None while there are too few)."""
        if len(observations) < self.min_observations + len(PRIORS):
            return None
        return fit(observations)

    def decide(
        self,
        similarity: float,
        delta: float,
        observations: Sequence[tuple[float, int]],
        cached_fit: Fit | None = None,
    ) -> Decision:
        """`observations` include the priors; `cached_fit` skips refitting unchanged
        observations."""
        s = round(float(similarity), 3)
        if len(observations) < self.min_observations + len(PRIORS):
            return Decision(Action.explore, 1.0, None)
        f = cached_fit or fit(observations)
        if f is None:
            return Decision(Action.explore, 1.0, None)
        t = tau(s, delta, f)
        u = self.rng.uniform(0, 1)
        return Decision(Action.explore if u <= t else Action.exploit, t, f)
