"""Numeric faults for the reliability tests, shared by the in-process tests and the subprocess harness."""

import torch


class InfGrad(torch.autograd.Function):
    """Identity forward, infinite gradient backward: an fp16-style overflow with a finite loss."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("inf")
