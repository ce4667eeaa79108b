//! The SVG plot: throughput over time and the latency distribution of
//! every phase (plotters' SVG backend: text is written as SVG `<text>`, so
//! no font library is needed).

use std::path::Path;

use plotters::prelude::*;

use crate::report::Report;

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Percentile -> x position: the number of nines, so 50% .. 99.99% spread
/// out evenly as in HdrHistogram's plots.
fn nines(p: f64) -> f64 {
    let q = (1.0 - p / 100.0).max(1e-5);
    -q.log10()
}

/// Writes the plot to `path` (creating its directory).
///
/// # Errors
///
/// The file cannot be written.
pub fn write_svg(path: &Path, report: &Report) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let root = SVGBackend::new(path, (1200, 450)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| format!("draw: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(600);

    // Throughput over time.
    let t_max = report
        .phases
        .iter()
        .flat_map(|p| p.timeline.iter().map(|s| s.t))
        .fold(1.0, f64::max);
    let y_max = report
        .phases
        .iter()
        .flat_map(|p| {
            p.timeline
                .iter()
                .map(|s| s.writes_per_sec + s.reads_per_sec)
        })
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&left)
        .caption(
            format!(
                "throughput: {} stores, {} regions, {} engines",
                report.stores,
                report
                    .regions
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                report.engine
            ),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since load start")
        .y_desc("operations / s")
        .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .draw()
        .map_err(err)?;
    let lines = report.phases.iter().map(|p| {
        let points = p
            .timeline
            .iter()
            .map(|s| (s.t, s.writes_per_sec + s.reads_per_sec))
            .collect();
        (
            format!("{} ({:.0} writes/s)", p.name, p.writes_per_sec),
            points,
        )
    });
    draw_lines(&mut chart, lines, SeriesLabelPosition::LowerRight)?;

    // Write latency by percentile.
    let lat_max = report
        .phases
        .iter()
        .flat_map(|p| p.write_latency.curve.iter().map(|c| c.1))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        / 1000.0
        * 1.1;
    let mut chart = ChartBuilder::on(&right)
        .caption("write latency by percentile", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..nines(99.99), 0.0..lat_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("ms")
        .x_labels(5)
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 10f64.powf(-x));
            format!("{p:.2}%")
        })
        .draw()
        .map_err(err)?;
    let lines = report.phases.iter().map(|p| {
        let points = p
            .write_latency
            .curve
            .iter()
            .filter(|c| c.0 < 100.0)
            .map(|&(pct, us)| (nines(pct), us as f64 / 1000.0))
            .collect();
        let label = format!(
            "{}: p99 {:.2} ms",
            p.name,
            p.write_latency.p99_us as f64 / 1000.0
        );
        (label, points)
    });
    draw_lines(&mut chart, lines, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(err)?;
    Ok(())
}

/// A chart of the plot: both axes continuous.
type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Draws one line per phase, `(label, points)` in phase order (colours
/// follow the order, the same in both charts), and their legend at
/// `position`.
fn draw_lines<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    lines: impl Iterator<Item = (String, Vec<(f64, f64)>)>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| format!("draw: {e:?}");
    for (i, (label, points)) in lines.enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(err)?;
    Ok(())
}
