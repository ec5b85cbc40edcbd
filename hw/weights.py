"""hw.MacroWeights: the LSM's weights from the physical macro (or its emulator).

``mode="read"``: form the LSM's block of differential pairs on the macro (resumable job), let
``read_time_s`` pass, read the conductance map once and convert it, ``w = const (G+ - G-) /
g_unit`` (the paper's usage). Against the emulator with the same seed and device this gives the
same weights as :class:`lsm.weights.CrossbarWeights`.

``mode="in_loop"``: additionally, every time step's matrix-vector product of the encoding runs on
the macro (``VMM?``), batched across samples (:class:`MacroInLoop`, an
:class:`lsm.inloop.InLoopEncoder`): the input spikes and the reservoir's last spikes drive the
rows, the ADC codes of the columns come back and become the differential currents of
:func:`lsm.kernels.membrane_update`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.macro import DEFAULT_RESOURCE, Macro
from lsm.config import LSMConfig
from lsm.events import EventBatch
from lsm.experiments.common import register_weight_source
from lsm.inloop import check_encode_arguments
from lsm.kernels import membrane_update
from lsm.weights import WeightSet, check_weights

__all__ = ["MacroWeights", "MacroInLoop", "EmulatedChipWeights"]


@dataclass
class MacroWeights:
    """A :class:`lsm.weights.WeightSource` backed by the macro.

    Parameters
    ----------
    resource : str
        VISA resource of the controller (default: the local emulator).
    mode : {"read", "in_loop"}
    limits, journal : see :class:`hw.Macro`.
    job_id : str, optional
        Journal id of the forming job (default derived from the block and the pulse), so that
        building twice does not form twice. Without a journal, the block is read first: formed
        if virgin, used as it is if already formed, refused if partly formed.
    form_pulse, v_read, read_time_s, g_unit_us : as in CrossbarWeights.
    offset : (row, col)
        Top-left cell of the LSM's block on the array (default the corner).
    """

    resource: str = DEFAULT_RESOURCE
    mode: str = "read"
    limits: object = None
    journal: object = None
    job_id: str | None = None
    form_pulse: object = None
    v_read: float = 0.2
    read_time_s: float = 1.0
    g_unit_us: float = 1.0
    progress: bool = False
    offset: tuple = (0, 0)

    def __post_init__(self) -> None:
        from lsm.crossbar import Pulse

        if self.mode not in ("read", "in_loop"):
            raise ValueError(f"mode must be 'read' or 'in_loop', got {self.mode!r}")
        if self.form_pulse is None:
            self.form_pulse = Pulse.form()

    def open_macro(self) -> Macro:
        """A new connection to this source's macro, with its limits and journal; use it as a
        context manager (``with source.open_macro() as m: ...``) so that it is closed."""
        return Macro(self.resource, self.limits, self.journal)

    def _form_without_journal(self, m: Macro, box, pulse) -> str | None:
        """No journal to resume from: form the block only if it is virgin, use it as it is
        if it is formed, and refuse a partly formed block (a job interrupted without a record:
        only its journal could finish it without pulsing a cell twice)."""
        formed = m.read_map(box) >= m.limits.formed_threshold_us
        if formed.all():
            return None
        if formed.any():
            raise ValueError(f"the block {list(box)} is partly formed ({int(formed.sum())} of "
                             f"{formed.size} cells); finish it with the journal of the job that "
                             "formed it (MacroWeights(journal=...))")
        return m.program_random(box, pulse, progress=self.progress)

    def build(self, config: LSMConfig) -> WeightSet:
        from lsm.crossbar import DifferentialMapping

        if config.p_in < 1 or config.p_rec < 1:
            raise ValueError("MacroWeights forms the whole block: p_in and p_rec must be 1")
        with self.open_macro() as m:
            mapping = DifferentialMapping(config.n_inputs, config.n_neurons, *m.geometry,
                                          int(self.offset[0]), int(self.offset[1]))
            reg = mapping.region
            box = (reg.row_start, reg.row_stop, reg.col_start, reg.col_stop)
            p = self.form_pulse
            job = self.job_id or (f"lsm-form-{box[0]}-{box[1]}-{box[2]}-{box[3]}-"
                                  f"{p.amplitude_v}-{p.width_ns}-{p.compliance_ua}")
            if m.journal is not None:
                m.program_random(box, p, job_id=job, progress=self.progress)
            else:
                job = self._form_without_journal(m, box, p)
            m.advance_time(self.read_time_s)
            g = m.read_map(box, v_read=self.v_read).astype(np.float64)
            idn, adc = m.idn, m.adc()
        w_in, w_rec = mapping.weights(g, config.w_in_const, config.w_rec_const, self.g_unit_us)
        w_in, w_rec = check_weights(w_in, w_rec, config, "MacroWeights")
        provenance = {"source": "macro", "instrument": idn, "resource": self.resource,
                      "job_id": job, "mode": self.mode, "v_read": self.v_read,
                      "read_time_s": self.read_time_s, "g_unit_us": self.g_unit_us,
                      "mapping": mapping.report(), "w_in_const": config.w_in_const,
                      "w_rec_const": config.w_rec_const,
                      "conductance_us": {"mean": float(g.mean()), "std": float(g.std())}}
        in_loop = None
        if self.mode == "in_loop":
            in_loop = MacroInLoop(self, box, config, adc)
        return WeightSet(w_in, w_rec, provenance, in_loop=in_loop, conductance_us=g)


class MacroInLoop:
    """Encodes with every multiply on the macro: an :class:`lsm.inloop.InLoopEncoder`.

    Per bin, the samples of a batch are multiplied together (``VMM?``): the input spikes and the
    reservoir's last spikes drive the block's rows at ``v_read`` (one multiply; two, input rows
    then recurrent rows, when the consts differ), the ADC codes of the columns come back and
    become the differential current ``I_t = gain * (I+ - I-) / v_read`` with ``gain = const /
    g_unit_us``; then :func:`lsm.kernels.membrane_update`, the same equation as every other
    path::

        u_t = decay * (u_{t-1} * (1 - s_{t-1})) + I_t       reset = "zero"
        u_t = decay * u_{t-1} + I_t - v_th * s_{t-1}        reset = "subtract"
        u_t = decay * u_{t-1} + I_t                         reset = "none"
        s_t = [u_t > v_th]

    Parameters
    ----------
    source : MacroWeights
        Opens the macro (:meth:`MacroWeights.open_macro`) for each batch; gives ``v_read`` and
        ``g_unit_us``.
    box : (r0, r1, c0, c1)
        The block of differential pairs on the macro: ``n_inputs`` input rows then
        ``n_neurons`` recurrent rows, G+ columns then G- columns.
    config : LSMConfig
        Sizes and the consts of the reservoir.
    adc : lsm.crossbar.ADC
        The macro's ADC (codes -> uA).
    """

    def __init__(self, source: MacroWeights, box, config: LSMConfig, adc) -> None:
        self.source, self.box, self.config, self.adc = source, box, config, adc

    def encode(self, *, events: EventBatch, decay: float, v_th: float, reset: str,
               counts: np.ndarray, spikes: np.ndarray, sample_offset: int) -> None:
        """See :meth:`lsm.inloop.InLoopEncoder.encode`; ``sample_offset`` is not needed (the
        macro draws its own noise)."""
        c = self.config
        n_in, n = c.n_inputs, c.n_neurons
        reset_mode = check_encode_arguments(events, reset, counts, spikes, n, "MacroInLoop")
        if events.n_channels != n_in:
            raise ValueError(f"MacroInLoop.encode: events have {events.n_channels} channels, "
                             f"the block {n_in} input rows")
        r0, r1, _, _ = self.box
        raster = events.to_raster(np.uint8)
        decay, v_th = np.float32(decay), np.float32(v_th)
        v_read_v = self.source.v_read
        gains = (np.float32(c.w_in_const / self.source.g_unit_us),
                 np.float32(c.w_rec_const / self.source.g_unit_us))
        u = np.zeros((len(events), n), np.float32)
        s = np.zeros((len(events), n), np.uint8)
        with self.source.open_macro() as m:
            for t in range(events.n_bins):
                if gains[0] == gains[1]:
                    x = np.concatenate([raster[:, t], s], axis=1)
                    current = self._multiply(m, x, (r0, r1), gains[0], v_read_v)
                else:
                    current = (self._multiply(m, raster[:, t], (r0, r0 + n_in), gains[0],
                                              v_read_v)
                               + self._multiply(m, s, (r0 + n_in, r1), gains[1], v_read_v))
                u, fired = membrane_update(u, current, s.astype(np.float32), decay, v_th,
                                           reset_mode)
                s = fired.astype(np.uint8)
                counts[:, (t * counts.shape[1]) // events.n_bins] += s
                if spikes.shape[0]:
                    spikes[:, t] = s

    def _multiply(self, m: Macro, x: np.ndarray, rows: tuple[int, int], gain: np.float32,
                  v_read_v: float) -> np.ndarray:
        """The differential current (weight units, float32 (len(x), n_neurons)) of one
        multiply of the spike vectors ``x`` on ``rows``; nothing is sent when no row is
        active."""
        n = self.config.n_neurons
        _, _, c0, c1 = self.box
        if not x.any():
            return np.zeros((len(x), n), np.float32)
        codes = m.vmm(rows, (c0, c1), x, v_read=v_read_v)
        g_sum_us = self.adc.currents(codes) / v_read_v
        return (gain * (g_sum_us[:, :n] - g_sum_us[:, n:])).astype(np.float32)


@dataclass
class EmulatedChipWeights:
    """The LSM's weights from a fresh emulated macro (a new die per reservoir): the whole lab
    path of :class:`MacroWeights` (form the block over the protocol, wait, read the map,
    convert) against an in-process emulator on a free local port, stopped again when the map
    is read. The die's seed is the LSM config's seed, so a reservoir seed names its die.

    This is the weight source ``"chip"`` of the jobs (``lsm demo``, ``lsm train --weights
    chip``); on a real macro use :class:`MacroWeights` with its resource.

    Parameters
    ----------
    device : lsm.crossbar.DeviceParams, optional
        The emulated cells (default: the model's defaults).
    adc : lsm.crossbar.ADC, optional
    read_time_s, v_read, g_unit_us : as in :class:`MacroWeights`.
    offset : (row, col)
        Top-left cell of the block.
    """

    device: object = None
    adc: object = None
    read_time_s: float = 1.0
    v_read: float = 0.2
    g_unit_us: float = 1.0
    offset: tuple = (0, 0)

    def build(self, config: LSMConfig) -> WeightSet:
        from hw.emulator import EmulatedMacro, EmulatorServer

        die = EmulatedMacro(seed=config.seed, device=self.device, adc=self.adc,
                            serial=f"EMU-{config.seed}")
        server = EmulatorServer(0, die).start()
        try:
            ws = MacroWeights(server.resource, read_time_s=self.read_time_s, v_read=self.v_read,
                              g_unit_us=self.g_unit_us, offset=self.offset).build(config)
        finally:
            server.stop()
        # the port and the forming job's id are new every time: the provenance names the die
        # instead, so that the feature cache recognises the same reservoir
        provenance = dict(ws.provenance, resource=f"emulator (die seed {config.seed})",
                          die_seed=config.seed)
        provenance.pop("job_id", None)
        return WeightSet(ws.w_in, ws.w_rec, provenance, conductance_us=ws.conductance_us)


register_weight_source("chip", EmulatedChipWeights,
                       "emulated IMC40 macro (a fresh die per reservoir, measured map)")
