"""A float64 reference for clnorm, written from DESIGN.md section 1 (never from the library).

Tensors are numpy arrays in memory order of their layout; internally everything is seen as
(N, C, D). Every element carries the index of its statistics group (in save_* order) and of
its gamma/beta entry, so one bincount-based code path serves all five kinds.
"""
import numpy as np

KINDS = ("batch", "layer", "instance", "group", "rms")
PER_SAMPLE_PARAMS = ("layer", "rms")  # gamma/beta of C*D floats, one sample in the layout
HAS_RUNNING = ("batch", "instance")


def to_ncd(mem, layout, n, c, d):
    """A memory-order array (any shape with n*c*d elements) as float64 (N, C, D)."""
    a = np.asarray(mem, dtype=np.float64).reshape(-1)
    return a.reshape(n, c, d) if layout == "nchw" else a.reshape(n, d, c).transpose(0, 2, 1)


def from_ncd(x3, layout):
    """(N, C, D) back to memory order, flat."""
    return (x3 if layout == "nchw" else x3.transpose(0, 2, 1)).reshape(-1)


def params_to_cd(p, layout, c, d):
    """LAYER/RMS gamma (C*D, one sample in the layout) as (C, D)."""
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    return p.reshape(c, d) if layout == "nchw" else p.reshape(d, c).T


def params_from_cd(p_cd, layout):
    return (p_cd if layout == "nchw" else p_cd.T).reshape(-1)


class Problem:
    def __init__(self, kind, layout, n, c, d, groups=0, eps=1e-5, momentum=0.1):
        self.kind, self.layout = kind, layout
        self.n, self.c, self.d, self.groups = n, c, d, groups
        self.eps, self.momentum = eps, momentum
        nn, cc, dd = np.meshgrid(np.arange(n), np.arange(c), np.arange(d), indexing="ij")
        if kind == "batch":
            self.gid, self.ngroups = cc, c
        elif kind in ("layer", "rms"):
            self.gid, self.ngroups = nn, n
        elif kind == "instance":
            self.gid, self.ngroups = nn * c + cc, n * c
        elif kind == "group":
            self.gid, self.ngroups = nn * groups + cc // (c // groups), n * groups
        else:
            raise ValueError(kind)
        if kind in PER_SAMPLE_PARAMS:
            self.pid, self.nparams = cc * d + dd, c * d  # (C, D) order
        else:
            self.pid, self.nparams = cc, c
        self.cc = cc
        self.count = np.bincount(self.gid.ravel(), minlength=self.ngroups).astype(np.float64)

    def _gsum(self, v):
        return np.bincount(self.gid.ravel(), weights=v.ravel(), minlength=self.ngroups)

    def _psum(self, v):
        return np.bincount(self.pid.ravel(), weights=v.ravel(), minlength=self.nparams)

    def _param(self, p, default):
        """gamma/beta (memory order) per element of (N, C, D)."""
        if p is None:
            return np.full(self.gid.shape, float(default))
        p = np.asarray(p, dtype=np.float64).reshape(-1)
        if self.kind in PER_SAMPLE_PARAMS:
            p = params_to_cd(p, self.layout, self.c, self.d).reshape(-1)
        return p[self.pid]

    def _param_out(self, flat):
        if self.kind in PER_SAMPLE_PARAMS:
            return params_from_cd(flat.reshape(self.c, self.d), self.layout)
        return flat

    def moments(self, x3):
        """Per group: mean, biased variance, and for RMS the mean of squares."""
        mean = self._gsum(x3) / self.count
        var = self._gsum((x3 - mean[self.gid]) ** 2) / self.count
        ms = self._gsum(x3 * x3) / self.count
        return mean, var, ms

    def forward(self, x, gamma=None, beta=None, running=None, training=True):
        """x in memory order. Returns dict: y (memory order, flat), save_mean, save_invstd
        (None where not written), running (updated copies, or None)."""
        x3 = to_ncd(x, self.layout, self.n, self.c, self.d)
        g, b = self._param(gamma, 1.0), self._param(beta, 0.0)
        mean, var, ms = self.moments(x3)
        out = {"save_mean": None, "save_invstd": None, "running": None}
        use_running = running is not None and not training
        if self.kind == "rms":
            inv = 1.0 / np.sqrt(ms + self.eps)
            y3 = x3 * inv[self.gid] * g + b
            out["save_invstd"] = inv
        elif use_running:
            rm, rv = (np.asarray(r, dtype=np.float64) for r in running)
            y3 = (x3 - rm[self.cc]) / np.sqrt(rv[self.cc] + self.eps) * g + b
        else:
            invstd = 1.0 / np.sqrt(var + self.eps)
            y3 = (x3 - mean[self.gid]) * invstd[self.gid] * g + b
            out["save_mean"], out["save_invstd"] = mean, invstd
        if running is not None and training:
            rm, rv = (np.asarray(r, dtype=np.float64) for r in running)
            unbiased = var * self.count / (self.count - 1)
            if self.kind == "instance":  # the average over n of the per-instance statistics
                bm = mean.reshape(self.n, self.c).mean(axis=0)
                bv = unbiased.reshape(self.n, self.c).mean(axis=0)
            else:
                bm, bv = mean, unbiased
            m = self.momentum
            out["running"] = ((1 - m) * rm + m * bm, (1 - m) * rv + m * bv)
        out["y"] = from_ncd(y3, self.layout)
        out["invstd_max"] = float(np.max(1.0 / np.sqrt((ms if self.kind == "rms" else var)
                                                       + self.eps)))
        return out

    def backward(self, x, dy, gamma=None, running=None, training=True):
        """dx (memory order, flat), dgamma, dbeta (memory order of the params)."""
        x3 = to_ncd(x, self.layout, self.n, self.c, self.d)
        dy3 = to_ncd(dy, self.layout, self.n, self.c, self.d)
        g = self._param(gamma, 1.0)
        gdy = dy3 * g
        mean, var, ms = self.moments(x3)
        if running is not None and not training:  # the running statistics are constants
            rm, rv = (np.asarray(r, dtype=np.float64) for r in running)
            inv = 1.0 / np.sqrt(rv[self.cc] + self.eps)
            xhat = (x3 - rm[self.cc]) * inv
            dx3 = gdy * inv
        elif self.kind == "rms":
            r = (1.0 / np.sqrt(ms + self.eps))[self.gid]
            xhat = x3 * r
            dx3 = r * gdy - x3 * r ** 3 * (self._gsum(gdy * x3) / self.count)[self.gid]
        else:
            inv = (1.0 / np.sqrt(var + self.eps))[self.gid]
            xhat = (x3 - mean[self.gid]) * inv
            m1 = (self._gsum(gdy) / self.count)[self.gid]
            m2 = (self._gsum(gdy * xhat) / self.count)[self.gid]
            dx3 = inv * (gdy - m1 - xhat * m2)
        return (from_ncd(dx3, self.layout), self._param_out(self._psum(dy3 * xhat)),
                self._param_out(self._psum(dy3)))
