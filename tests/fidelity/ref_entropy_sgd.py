"""Reference: Entropy-SGD as the official PyTorch code computes it, transcribed in our own words.

Source: github.com/ucla-vision/entropy-sgd @ 61329f9c5e5fec2264af3a4bb8b722cb335322c4, python/optim.py (EntropySGD.step)
driven as python/train.py drives it (momentum 0.9, Nesterov, every closure() call draws the next mini-batch).
One amendment, documented: python/optim.py never advances its step counter t, so its gamma (1 + scoping)^t stays
gamma; the Lua code that produced the paper's results (entropyoptim.lua) advances t before using it, and the
README describes that schedule. This transcription advances t as the Lua code does.

Reproduced as in the official: the first closure() of a step only evaluates (its gradient seeds the outer momentum
buffer on the very first step); the noise buffer is redrawn at the start of every step and then once per inner
step and parameter; weight decay and momentum act in the inner loop and again on the outer direction x - mu;
the outer step has no gamma factor; without Nesterov the inner direction aliases the momentum buffer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


class EntropySGDReference(torch.optim.Optimizer):
    def __init__(self, params: Any, config: dict[str, Any]) -> None:
        cfg = dict(lr=0.01, momentum=0, damp=0, weight_decay=0, nesterov=True, L=0, eps=1e-4, g0=1e-2, g1=0)
        cfg.update({k: v for k, v in config.items() if v is not None})
        super().__init__(params, cfg)
        self.config = cfg

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:
        with torch.enable_grad():
            first = closure()
        c = self.config
        lr, mom, wd, damp, nesterov = c["lr"], c["momentum"], c["weight_decay"], c["damp"], c["nesterov"]
        L, eps, g0, g1 = int(c["L"]), c["eps"], c["g0"], c["g1"]
        params = self.param_groups[0]["params"]
        st = self.state
        if "t" not in st:
            st["t"] = 0
            st["wc"] = [copy.deepcopy(w.data) for w in params]
            st["mdw"] = [copy.deepcopy(w.grad.data) for w in params]
            st["langevin"] = dict(mw=copy.deepcopy(st["wc"]), mdw=copy.deepcopy(st["mdw"]),
                                  eta=copy.deepcopy(st["mdw"]), lr=0.1, beta1=0.75)
        lp = st["langevin"]
        for i, w in enumerate(params):
            st["wc"][i].copy_(w.data)
            lp["mw"][i].copy_(w.data)
            lp["mdw"][i].zero_()
            lp["eta"][i].normal_()
        llr, beta1 = lp["lr"], lp["beta1"]
        st["t"] += 1  # the amendment (see the module docstring)
        g = g0 * (1 + g1) ** st["t"]
        for _ in range(L):
            with torch.enable_grad():
                closure()
            for wc, w, mw, mdw, eta in zip(st["wc"], params, lp["mw"], lp["mdw"], lp["eta"], strict=True):
                dw = w.grad.data
                if wd > 0:
                    dw.add_(w.data, alpha=wd)
                if mom > 0:
                    mdw.mul_(mom).add_(dw, alpha=1 - damp)
                    if nesterov:
                        dw.add_(mdw, alpha=mom)
                    else:
                        dw = mdw
                eta.normal_()
                dw.add_(wc - w.data, alpha=-g).add_(eta, alpha=eps / np.sqrt(0.5 * llr))
                w.data.add_(dw, alpha=-llr)
                mw.mul_(beta1).add_(w.data, alpha=1 - beta1)
        if L > 0:
            for i, w in enumerate(params):
                w.data.copy_(st["wc"][i])
                w.grad.data.copy_(w.data - lp["mw"][i])
        for w, mdw in zip(params, st["mdw"], strict=True):
            dw = w.grad.data
            if wd > 0:
                dw.add_(w.data, alpha=wd)
            if mom > 0:
                mdw.mul_(mom).add_(dw, alpha=1 - damp)
                if nesterov:
                    dw.add_(mdw, alpha=mom)
                else:
                    dw = mdw
            w.data.add_(dw, alpha=-lr)
        return first
