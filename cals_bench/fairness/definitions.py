"""What every number of an audit means: one formula and its source per entry (docs/fairness.md expands)."""

from __future__ import annotations

DEFINITIONS: dict[str, str] = {
    "group": (
        "A grouping is one attribute or an intersection written 'a*b'; a sample's group label joins its "
        "values with '*'. Samples with a missing attribute value have no label there (counted in "
        "n_missing_attribute) but count in the overall row."
    ),
    "n, n_nan": (
        "Per metric, NaN values (metric undefined for the sample, e.g. no face found) are dropped; n "
        "counts the valid values and n_nan the dropped ones (a sample with no record for the metric "
        "counts as NaN)."
    ),
    "small_group": (
        "n < min_group_size. Small groups stay in every table, flagged, and are left out of worst/best "
        "group, difference, ratio, GPI sum and gap, and every test."
    ),
    "mean_ci, median_ci": (
        "Percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13): resample the group's n valid "
        "values with replacement B times (B = bootstrap), take the (1-c)/2 and (1+c)/2 quantiles of the B "
        "means (medians), c = confidence."
    ),
    "distance_interval": (
        "Interval of the statistics whose plug-in estimate is biased upwards by sampling noise (GPI, "
        "gpi_sum, gpi_gap, 1-D GPI, difference, ratio). 'basic' (default): (2t - q_(1+c)/2, 2t - "
        "q_(1-c)/2), the reverse-percentile interval (Davison & Hinkley 1997, eq. 5.6), clipped to the "
        "statistic's range; it corrects the upward shift of the bootstrap distribution and may lie below "
        "the estimate. 'percentile': (q_(1-c)/2, q_(1+c)/2). gpi_boot_bias = mean(resampled) - estimate."
    ),
    "worst_group, best_group": (
        "Among compared groups, the lowest mean for a higher-is-better metric (highest for "
        "lower-is-better) and the opposite. As fairlearn MetricFrame.group_min/group_max, made "
        "direction-aware."
    ),
    "difference": (
        "max_g mean_g - min_g mean_g over compared groups (fairlearn "
        "MetricFrame.difference(method='between_groups')); interval: stratified bootstrap (each group "
        "resampled on its own), of the kind set by distance_interval (basic by default)."
    ),
    "ratio": (
        "min_g mean_g / max_g mean_g over compared groups (fairlearn "
        "MetricFrame.ratio(method='between_groups')); NaN unless every compared mean is > 0. Interval as "
        "for difference."
    ),
    "diff_to_overall": ("mean_g - mean_overall, the overall mean taken over all samples with a valid value."),
    "gpi": (
        "Group Perceptual Index (Ohayon, Elad & Michaeli, 'Perceptual Fairness in Image Restoration', "
        "NeurIPS 2024): GPI_g = W1(P_g^ref, P_g^out), the 1-Wasserstein distance between the empirical "
        "distribution of the group's reference-image features and that of its output features, with "
        "Euclidean ground cost: W1 = min over couplings pi of sum_ij pi_ij ||x_i - y_j||_2."
    ),
    "gpi method exact": (
        "Used when the grouping's largest group has <= gpi_exact_max_n samples: POT ot.emd2 with uniform "
        "weights on ot.dist(ref, out, metric='euclidean') (Flamary et al., JMLR 2021). In high dimension "
        "the empirical W1 is biased upwards by sampling, at rate n^(-1/d) (Fournier & Guillin 2015), so "
        "values depend on group size; the permutation test keeps group sizes and stays valid. For outputs "
        "close to their own references the optimal coupling is the identity and exact W1 is about the "
        "mean per-sample distortion mean_i ||out_i - ref_i||."
    ),
    "gpi method sliced": (
        "Used above gpi_exact_max_n: normalised sliced W1 = (1/K) sum_k W1(<theta_k, X>, <theta_k, Y>) / "
        "c_d, theta_k K = gpi_projections unit directions drawn by POT with gpi_seed (POT "
        "ot.sliced_wasserstein_distance, p=1; Bonneel et al. 2015), c_d = E|theta_1| = "
        "Gamma(d/2)/(sqrt(pi) Gamma((d+1)/2)). Dividing by c_d makes it equal |delta| for a translation "
        "by delta, like W1, and keeps it a lower bound of W1 in general."
    ),
    "gpi_sum": (
        "sum_g GPI_g over compared groups: the CALS paper's fairness term (L_fair / GPI) as written. "
        "Interval: stratified bootstrap of the sum (distance_interval kind)."
    ),
    "gpi_gap": (
        "max_g GPI_g - min_g GPI_g over compared groups. Perceptual fairness (Ohayon et al. 2024) holds "
        "when all GPI_g are equal, i.e. gap = 0. Interval: stratified bootstrap, distance_interval kind "
        "(each group resampled on its own, samples keep their ref/out pair); p-value: permutation test "
        "below."
    ),
    "gpi_gap permutation test": (
        "H0: group labels do not matter. Labels are permuted across the samples of compared groups (sizes "
        "kept), the gap recomputed P = gpi_permutations times; p = (1 + #{gap* >= gap}) / (1 + P) "
        "(Phipson & Smyth 2010)."
    ),
    "gpi_1d": (
        "1-D variant on a per-image metric m (gpi_metric, LPIPS by default): GPI1d_g = W1(law of m over "
        "group g, law of m over the pool of all compared groups) = integral_0^1 |F_g^-1(u) - "
        "F_pool^-1(u)| du (scipy.stats.wasserstein_distance). Gap, sum, intervals (group resampled, pool "
        "fixed) and permutation test as for gpi."
    ),
    "kruskal_wallis": (
        "Kruskal-Wallis H test (Kruskal & Wallis, JASA 1952; scipy.stats.kruskal) of equal distributions "
        "of a metric across compared groups."
    ),
    "gap_permutation": (
        "Permutation test of the metric gap max_g mean_g - min_g mean_g: labels permuted across samples "
        "of compared groups P = permutations times; p = (1 + #{gap* >= gap}) / (1 + P)."
    ),
    "wilcoxon": (
        "Paired Wilcoxon signed-rank test (Wilcoxon 1945; scipy.stats.wilcoxon, two-sided, zero "
        "differences dropped) of d = a - b over samples where both models have a value."
    ),
    "paired_bootstrap": (
        "Percentile bootstrap of mean(d), d = a - b, resampling pairs; p = min(1, 2 min((1 + #{d* <= 0}), "
        "(1 + #{d* >= 0})) / (1 + B))."
    ),
    "holm": (
        "Holm (1979) step-down correction within each test family (one family per test kind over all "
        "groupings and metrics or feature sets of the audit): with m p-values sorted ascending, p_adj_(i) "
        "= max_{j<=i} min(1, (m - j + 1) p_(j)); significant when p_adj <= alpha. Controls the "
        "family-wise error rate."
    ),
}
