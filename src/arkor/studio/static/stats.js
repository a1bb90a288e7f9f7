// Summary statistics of a loss series for the job page's "Advanced" view.
// Mean ± 95% confidence interval (Student t below 31 samples, z = 1.96 beyond),
// sample standard deviation and variance (n − 1), and p90 / p95 by linear interpolation.

const T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
  2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
  2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042];

export function critical(df) {
  return df >= 1 && df <= T975.length ? T975[df - 1] : 1.96;
}

export function quantile(sorted, p) {
  if (!sorted.length) return NaN;
  const pos = (sorted.length - 1) * p;
  const low = Math.floor(pos);
  const high = Math.min(low + 1, sorted.length - 1);
  return sorted[low] + (sorted[high] - sorted[low]) * (pos - low);
}

export function summarize(values) {
  const xs = values.filter(Number.isFinite);
  const n = xs.length;
  if (!n) return null;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const variance = n > 1 ? xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1) : NaN;
  const std = Math.sqrt(variance);
  const half = n > 1 ? critical(n - 1) * std / Math.sqrt(n) : NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return { n, mean, ciLow: mean - half, ciHigh: mean + half, half, std, variance,
    p90: quantile(sorted, 0.9), p95: quantile(sorted, 0.95) };
}
