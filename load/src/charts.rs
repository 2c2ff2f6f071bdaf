//! SVG charts of a report (plotters' SVG backend: no bitmap, no font files; the viewer draws
//! the text). Per run: propagation percentiles and CPU/memory against time; for a sweep: the
//! same figures against the number of stores.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::LoadError;
use crate::report::RunReport;

const SIZE: (u32, u32) = (960, 540);
const P50: RGBColor = RGBColor(31, 119, 180);
const P99: RGBColor = RGBColor(255, 127, 14);
const MAX: RGBColor = RGBColor(214, 39, 40);
const HUB: RGBColor = RGBColor(44, 160, 44);
const TOOL: RGBColor = RGBColor(127, 127, 127);
const EVENT: RGBColor = RGBColor(148, 103, 189);

/// One line of a chart.
struct Series {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

fn series(label: &str, color: RGBColor, points: Vec<(f64, f64)>) -> Series {
    Series {
        label: label.into(),
        color,
        points,
    }
}

struct Axes<'a> {
    title: &'a str,
    x: &'a str,
    y: &'a str,
}

fn chart_err(path: &Path) -> impl Fn(String) -> LoadError + '_ {
    move |why| LoadError::Chart {
        path: path.to_path_buf(),
        why,
    }
}

/// Draws `lines` (and vertical marks at `events`) on `area`.
fn draw(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    axes: Axes<'_>,
    legend: SeriesLabelPosition,
    lines: &[Series],
    events: &[(f64, String)],
) -> Result<(), String> {
    let all = lines.iter().flat_map(|s| s.points.iter());
    let x_max = all.clone().map(|p| p.0).fold(0.0, f64::max).max(1.0) * 1.02;
    let y_max = all.map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(axes.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(axes.x)
        .y_desc(axes.y)
        .draw()
        .map_err(|e| e.to_string())?;
    for s in lines.iter().filter(|s| !s.points.is_empty()) {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    for (i, (t, what)) in events.iter().enumerate() {
        // Staggered, so marks close together stay readable.
        let row = 0.97 - 0.06 * (i % 4) as f64;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(*t, 0.0), (*t, y_max)],
                EVENT.stroke_width(1),
            )))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(Text::new(
                what.clone(),
                (*t, y_max * row),
                ("sans-serif", 12).into_font().color(&EVENT),
            )))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// `propagation.svg` and `resources.svg` of one run, in `dir`.
pub fn run_charts(dir: &Path, r: &RunReport) -> Result<Vec<PathBuf>, LoadError> {
    let events: Vec<(f64, String)> = r.events.iter().map(|e| (e.t, e.what.clone())).collect();
    let mid = |w: &crate::report::Window| (w.t_start + w.t_end) / 2.0;
    let pick = |f: fn(&crate::report::Latency) -> Option<f64>| -> Vec<(f64, f64)> {
        r.propagation_over_time
            .iter()
            .filter_map(|w| f(&w.latency).map(|v| (mid(w), v)))
            .collect()
    };
    let latency = dir.join("propagation.svg");
    {
        let root = SVGBackend::new(&latency, SIZE).into_drawing_area();
        let err = chart_err(&latency);
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        draw(
            &root,
            Axes {
                title: &format!(
                    "Propagation of a sale to the other stores, {} stores ({} s windows)",
                    r.stores,
                    r.propagation_over_time
                        .first()
                        .map_or(0.0, |w| w.t_end - w.t_start)
                ),
                x: "time since the stores started, s",
                y: "seconds",
            },
            SeriesLabelPosition::UpperRight,
            &[
                series("p50", P50, pick(|l| l.p50)),
                series("p99", P99, pick(|l| l.p99)),
                series("max", MAX, pick(|l| l.max)),
            ],
            &events,
        )
        .map_err(&err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    let resources = dir.join("resources.svg");
    {
        let root = SVGBackend::new(&resources, SIZE).into_drawing_area();
        let err = chart_err(&resources);
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let (top, bottom) = root.split_vertically(SIZE.1 / 2);
        let hub = r.hub.as_ref().map(|h| h.samples.as_slice()).unwrap_or(&[]);
        let tool_cpu = r.timeline.iter().map(|p| (p.t, p.tool_cpu_cores)).collect();
        let tool_rss = r.timeline.iter().map(|p| (p.t, p.tool_rss_mib)).collect();
        draw(
            &top,
            Axes {
                title: &format!("CPU, {} stores", r.stores),
                x: "time since the stores started, s",
                y: "cores",
            },
            SeriesLabelPosition::LowerRight,
            &[
                series("hub", HUB, hub.iter().map(|s| (s.t, s.cpu_cores)).collect()),
                series("load tool", TOOL, tool_cpu),
            ],
            &events,
        )
        .map_err(&err)?;
        draw(
            &bottom,
            Axes {
                title: "Resident memory",
                x: "time since the stores started, s",
                y: "MiB",
            },
            SeriesLabelPosition::LowerRight,
            &[
                series("hub", HUB, hub.iter().map(|s| (s.t, s.rss_mib)).collect()),
                series("load tool", TOOL, tool_rss),
            ],
            &events,
        )
        .map_err(&err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(vec![latency, resources])
}

/// `sweep-propagation.svg`, `sweep-resources.svg` and `sweep-connect.svg`: each figure against
/// the number of stores.
pub fn sweep_charts(dir: &Path, runs: &[RunReport]) -> Result<Vec<PathBuf>, LoadError> {
    let by = |f: &dyn Fn(&RunReport) -> Option<f64>| -> Vec<(f64, f64)> {
        runs.iter()
            .filter_map(|r| f(r).map(|v| (r.stores as f64, v)))
            .collect()
    };
    let mut out = Vec::new();
    let mut one = |name: &str, panels: Vec<(Axes<'_>, Vec<Series>)>| -> Result<(), LoadError> {
        let path = dir.join(name);
        let err = chart_err(&path);
        let root = SVGBackend::new(&path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let areas = root.split_evenly((panels.len(), 1));
        for (area, (axes, lines)) in areas.iter().zip(panels) {
            draw(area, axes, SeriesLabelPosition::UpperLeft, &lines, &[]).map_err(&err)?;
        }
        root.present().map_err(|e| err(e.to_string()))?;
        drop(root);
        out.push(path.clone());
        Ok(())
    };
    one(
        "sweep-propagation.svg",
        vec![(
            Axes {
                title: "Propagation of a sale to the other stores",
                x: "stores",
                y: "seconds",
            },
            vec![
                series("p50", P50, by(&|r| r.propagation_secs.p50)),
                series("p99", P99, by(&|r| r.propagation_secs.p99)),
                series("max", MAX, by(&|r| r.propagation_secs.max)),
            ],
        )],
    )?;
    one(
        "sweep-resources.svg",
        vec![
            (
                Axes {
                    title: "Hub CPU",
                    x: "stores",
                    y: "cores",
                },
                vec![
                    series(
                        "mean",
                        HUB,
                        by(&|r| r.hub.as_ref().map(|h| h.cpu_cores_mean)),
                    ),
                    series("max", MAX, by(&|r| r.hub.as_ref().map(|h| h.cpu_cores_max))),
                    series(
                        "load tool, mean",
                        TOOL,
                        by(&|r| Some(r.tool.cpu_cores_mean)),
                    ),
                ],
            ),
            (
                Axes {
                    title: "Hub resident memory",
                    x: "stores",
                    y: "MiB",
                },
                vec![
                    series("max", HUB, by(&|r| r.hub.as_ref().map(|h| h.rss_mib_max))),
                    series("load tool, max", TOOL, by(&|r| Some(r.tool.rss_mib_max))),
                ],
            ),
        ],
    )?;
    one(
        "sweep-connect.svg",
        vec![(
            Axes {
                title: "Connecting the stores",
                x: "stores",
                y: "seconds",
            },
            vec![
                series(
                    "all connected (new stores)",
                    P50,
                    by(&|r| r.connect_all_secs),
                ),
                series(
                    "all back after a hub restart",
                    MAX,
                    by(&|r| r.reconnect_all_secs),
                ),
            ],
        )],
    )?;
    Ok(out)
}
