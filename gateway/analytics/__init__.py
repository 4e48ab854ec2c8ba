"""Edge analytics: detectors on each node's own history, baselines in SQLite, explainable flags upstream.

``Analytics`` (:mod:`gateway.analytics.engine`) runs the detectors of a node's
class (:mod:`~gateway.analytics.lamp`, :mod:`~gateway.analytics.water`,
:mod:`~gateway.analytics.environment`) on every poll; each :class:`Flag`
(:mod:`~gateway.analytics.flags`) goes upstream as a node event.
``[analytics]`` in the configuration tunes or switches off every rule per class
(:mod:`~gateway.analytics.settings`).
"""

from gateway.analytics.baselines import BaselineError, BaselineStore
from gateway.analytics.engine import Analytics
from gateway.analytics.flags import FLAG_SEQ_BASE, Flag, is_flag_seq
from gateway.analytics.settings import AnalyticsConfig

__all__ = ["FLAG_SEQ_BASE", "Analytics", "AnalyticsConfig", "BaselineError", "BaselineStore", "Flag", "is_flag_seq"]
