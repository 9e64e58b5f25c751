"""Spiking neurons: pure functions (``functional``) and thin modules (``modules``)."""
from .functional import CubaState, cuba_multistep, cuba_step, lif_step, loihi_decays
from .modules import CubaLIF, Readout
from .surrogate import SURROGATES, get_surrogate

__all__ = ["CubaLIF", "Readout", "CubaState", "cuba_step", "cuba_multistep", "lif_step",
           "loihi_decays", "get_surrogate", "SURROGATES"]
