"""EnlightenGAN-style unpaired enhancement (Jiang et al., TIP 2021), trained by cals-bench."""
