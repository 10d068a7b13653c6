"""The one set of fastmath flags the jitted kernels use (layernorm, softmax backward).

fastmath without 'nnan'/'ninf': infinities and NaNs keep their IEEE meaning, so
the -inf entries of an attention mask, or a NaN in the input, still behave (and
show up) as they should.
  reassoc  reorder sums, so LLVM can vectorise them
  contract fuse a*b+c into one FMA
  arcp     x/y may become x*(1/y)
  nsz      ignore the sign of zero
"""
SAFE_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}  # numba wants a set
