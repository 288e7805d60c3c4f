"""NeMo Microservices 25.x (v1 REST) platform: Datastore + Entity Store + Evaluator + Customizer + DMS."""

from flywheel.platforms.nemo_v1.client import NemoV1Timing
from flywheel.platforms.nemo_v1.platform import NemoV1Platform

__all__ = ["NemoV1Platform", "NemoV1Timing"]
