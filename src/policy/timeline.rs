//! Merging per-frame hits into time ranges.

/// Merges sorted hit timestamps into `[start, end]` ranges, joining hits at most
/// `merge_gap` seconds apart.
pub fn merge(times: &[f64], merge_gap: f64) -> Vec<[f64; 2]> {
    let mut sorted: Vec<f64> = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ranges: Vec<[f64; 2]> = Vec::new();
    for t in sorted {
        match ranges.last_mut() {
            Some(r) if t - r[1] <= merge_gap => r[1] = r[1].max(t),
            _ => ranges.push([t, t]),
        }
    }
    ranges
}

/// Merges already-built ranges (possibly overlapping, unsorted).
pub fn merge_ranges(mut ranges: Vec<[f64; 2]>, merge_gap: f64) -> Vec<[f64; 2]> {
    ranges.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let mut out: Vec<[f64; 2]> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if r[0] - last[1] <= merge_gap => last[1] = last[1].max(r[1]),
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_hits_join_and_far_hits_split() {
        assert_eq!(
            merge(&[5.0, 1.0, 2.0, 2.5], 1.0),
            vec![[1.0, 2.5], [5.0, 5.0]]
        );
        assert_eq!(merge(&[], 1.0), Vec::<[f64; 2]>::new());
        assert_eq!(
            merge(&[1.0, 2.0], 1.0),
            vec![[1.0, 2.0]],
            "a gap equal to merge_gap joins"
        );
    }

    #[test]
    fn overlapping_ranges_merge() {
        let r = merge_ranges(vec![[4.0, 6.0], [0.0, 1.0], [0.5, 3.0]], 0.5);
        assert_eq!(r, vec![[0.0, 3.0], [4.0, 6.0]]);
    }
}
