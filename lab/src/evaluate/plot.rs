//! The evaluation's PNG plots, drawn with `plotters` in DejaVu Sans (Debian's
//! `fonts-dejavu-core`, installed when missing).

use std::path::Path;
use std::sync::Once;

use anyhow::Context;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::stats::{Estimate, per_seed};
use super::world::Metrics;
use super::{Run, SCHEDULERS};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const COLORS: [RGBColor; 6] = [
    RGBColor(80, 80, 80),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

fn font() -> anyhow::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = (|| {
            fitsched_e2e::tools::ensure_debian_file(Path::new(FONT), "fonts-dejavu-core")?;
            let bytes: &'static [u8] = Box::leak(std::fs::read(FONT)?.into_boxed_slice());
            register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| anyhow::anyhow!("{FONT} is not a font"))
        })();
    });
    result
}

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing: {e:?}")
}

type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(draw_err)
}

/// One metric per scheduler and cluster size: the mean over seeds with its 95 %
/// confidence interval.
pub fn estimates(
    path: &Path,
    runs: &[Run],
    sizes: &[usize],
    title: &str,
    f: impl Fn(&Metrics) -> f64 + Copy,
) -> anyhow::Result<()> {
    font()?;
    let points: Vec<(usize, usize, Estimate)> = sizes
        .iter()
        .enumerate()
        .flat_map(|(si, &n)| {
            SCHEDULERS.iter().enumerate().map(move |(i, s)| (si, i, Estimate::of(&per_seed(runs, n, s, f))))
        })
        .collect();
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    // Every metric plotted is a share or a ratio of at least 0; the axis starts there and
    // an interval wider than the data (two seeds) is cut at twice the largest mean.
    let largest = points.iter().map(|(_, _, e)| finite(e.mean)).fold(0.0, f64::max).max(0.05);
    let top = points
        .iter()
        .map(|(_, _, e)| finite(e.mean) + finite(e.ci95))
        .fold(0.0, f64::max)
        .clamp(largest, 2.0 * largest)
        * 1.1;
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title}: mean and 95 % CI over seeds"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(SCHEDULERS.len() as f64 - 0.5), 0.0..top)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(SCHEDULERS.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                SCHEDULERS.get(i as usize).unwrap_or(&"").to_string()
            } else {
                String::new()
            }
        })
        .y_desc(title)
        .draw()
        .map_err(draw_err)?;
    let width = 0.7 / sizes.len().max(1) as f64;
    for (si, &n) in sizes.iter().enumerate() {
        let color = COLORS[(si + 1) % COLORS.len()];
        let x = |i: usize| i as f64 - 0.35 + width * (si as f64 + 0.5);
        let mine: Vec<(usize, Estimate)> =
            points.iter().filter(|(s, _, _)| *s == si).map(|(_, i, e)| (*i, *e)).collect();
        chart
            .draw_series(mine.iter().map(|(i, e)| {
                Rectangle::new([(x(*i) - width * 0.4, 0.0), (x(*i) + width * 0.4, e.mean)], color.mix(0.75).filled())
            }))
            .map_err(draw_err)?
            .label(format!("{n} nodes"))
            .legend(move |(lx, ly)| Rectangle::new([(lx, ly - 5), (lx + 12, ly + 5)], color.filled()));
        chart
            .draw_series(mine.iter().filter(|(_, e)| e.ci95.is_finite()).map(|(i, e)| {
                let (lo, hi) = ((e.mean - e.ci95).max(0.0), (e.mean + e.ci95).min(top));
                ErrorBar::new_vertical(x(*i), lo, e.mean, hi, BLACK.stroke_width(1), 8)
            }))
            .map_err(draw_err)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(draw_err).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The distribution of benchmark pods' throughput per scheduler (all seeds pooled), as
/// the share of pods at or below each throughput.
pub fn distribution(path: &Path, runs: &[Run], nodes: usize) -> anyhow::Result<()> {
    font()?;
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Benchmark pods' throughput at {nodes} nodes, all seeds"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..1.02, 0f64..1.0)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("normalised throughput (1 = the session's no-interference baseline)")
        .y_desc("share of pods at or below")
        .draw()
        .map_err(draw_err)?;
    for (i, s) in SCHEDULERS.iter().enumerate() {
        let mut values: Vec<f64> =
            runs.iter().filter(|r| r.nodes == nodes && r.scheduler == *s).flat_map(|r| r.throughputs.clone()).collect();
        if values.is_empty() {
            continue;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len() as f64;
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(k, &v)| (v, (k + 1) as f64 / n)),
                color.stroke_width(2),
            ))
            .map_err(draw_err)?
            .label(*s)
            .legend(move |(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 14, ly)], color.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(draw_err).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
