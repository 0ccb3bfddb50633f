"""Reconstruction on top of :mod:`operators`: data, noise, metrics, iterative solvers, networks.

Subpackages and modules (imported on demand, so ``import recon`` stays light):

* :mod:`recon.data` -- phantom families, the CT_small.dcm slice, loaders, noise models, datasets;
* :mod:`recon.metrics` -- PSNR, SSIM, RMSE (in HU), optionally inside a mask;
* :mod:`recon.iterative` -- SIRT, CGLS, TV-PDHG and the power method;
* :mod:`recon.nets` -- learned reconstruction networks; the trainer (:mod:`recon.train`).
"""
