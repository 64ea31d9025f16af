"""CALS: context-aware loss scheduling for low-light enhancement (the method cals-bench is named after).

- :mod:`.network`: the U-Net enhancer (the same network for CALS and its fixed-weight baseline);
- :mod:`.context`: the context predictor C(I) -> p(c | I) over (medical, face, general);
- :mod:`.losses`: L_rec, L_perc, L_struct, L_id, L_fair, per sample;
- :mod:`.scheduler`: w_i(C) = sum_c p(c | I) W[c, i];
- :mod:`.data`: the ``cals-contexts`` training data source (the protocols' train splits);
- :mod:`.trainer`: the ``cals`` training task. See docs/cals.md.
"""
