"""The paper's Table 1 baselines on DoDNet's backbone (what each does: docs/baselines.md)."""

from ccq.models.baselines.build import build_baseline
from ccq.models.baselines.conditioned import CondDec, CondEnc
from ccq.models.baselines.multihead import MultiHead
from ccq.models.baselines.multinets import MultiNets
from ccq.models.baselines.tal import TALNet, tal_num_classes

__all__ = ["CondDec", "CondEnc", "MultiHead", "MultiNets", "TALNet", "build_baseline", "tal_num_classes"]
