//! `soak.png`: RSS, file descriptors, latency and request rate over the run, with the
//! warm-up, the issuer's outages and the key rotations marked. Drawn with plotters'
//! bitmap backend; text needs a TrueType font, read at run time from `SOAK_FONT` or the
//! usual system places (without one the chart is drawn without text).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, RGBAColor};

use crate::jwks::Mode;
use crate::report::Sample;

const FONT: &str = "sans-serif";

fn load_font() -> bool {
    let mut candidates: Vec<String> = std::env::var("SOAK_FONT").into_iter().collect();
    candidates.extend(
        [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
            "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
            "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
            "/usr/share/fonts/noto/NotoSans-Regular.ttf",
            "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
            "/System/Library/Fonts/Supplemental/Arial.ttf",
        ]
        .map(String::from),
    );
    for path in candidates {
        if let Ok(bytes) = std::fs::read(&path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

struct Marks<'a> {
    outages: &'a [(f64, f64, Mode)],
    rotations: &'a [f64],
    warmup: f64,
}

type Err = Box<dyn std::error::Error>;
/// A named, coloured line of (t, value) points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);
/// A named, coloured line drawn from one field of the samples.
type Field = (&'static str, RGBColor, fn(&Sample) -> f64);

const OUTAGE: RGBAColor = RGBAColor(220, 60, 60, 0.16);
const WARMUP: RGBAColor = RGBAColor(120, 120, 120, 0.12);
const ROTATION: RGBAColor = RGBAColor(40, 90, 200, 0.35);

/// One panel with a linear y axis and up to two series.
#[allow(clippy::too_many_arguments)]
fn panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    text: bool,
    caption: &str,
    y_desc: &str,
    xmax: f64,
    series: &[Series],
    marks: &Marks,
    y_floor_zero: bool,
    x_desc: &str,
) -> Result<(), Err> {
    let values = series.iter().flat_map(|s| s.2.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        if v.is_finite() {
            (a.min(v), b.max(v))
        } else {
            (a, b)
        }
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.15).max(hi.abs() * 0.05).max(1.0);
    let ymin = if y_floor_zero {
        0.0
    } else {
        (lo - pad).max(0.0)
    };
    let ymax = hi + pad;
    let mut b = ChartBuilder::on(area);
    b.margin(12);
    if text {
        b.caption(caption, (FONT, 20))
            .x_label_area_size(28)
            .y_label_area_size(64);
    }
    let mut chart = b.build_cartesian_2d(0f64..xmax, ymin..ymax)?;
    if text {
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| {
                if (ymax - ymin) >= 20.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            })
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .draw()?;
    }
    chart.draw_series(std::iter::once(Rectangle::new(
        [(0.0, ymin), (marks.warmup.min(xmax), ymax)],
        WARMUP.filled(),
    )))?;
    chart.draw_series(
        marks
            .outages
            .iter()
            .map(|(s, e, _)| Rectangle::new([(*s, ymin), (*e, ymax)], OUTAGE.filled())),
    )?;
    chart.draw_series(
        marks
            .rotations
            .iter()
            .map(|t| PathElement::new(vec![(*t, ymin), (*t, ymax)], ROTATION)),
    )?;
    for (name, color, points) in series {
        // Thicker lines get miter joins that overshoot at sharp reversals (spikes):
        // only a smooth line (RSS) is drawn 2 px wide.
        let width = if points.windows(3).any(|w| {
            (w[1].1 - w[0].1) * (w[2].1 - w[1].1) < 0.0
                && (w[1].1 - w[0].1).abs() > (ymax - ymin) * 0.05
        }) {
            1
        } else {
            2
        };
        let s = chart.draw_series(LineSeries::new(
            points.iter().copied().filter(|p| p.1.is_finite()),
            color.stroke_width(width),
        ))?;
        if text {
            let c = *color;
            s.label(*name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
            });
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 14))
            .draw()?;
    }
    Ok(())
}

/// Latency on a log scale: a hung JWKS fetch costs the unknown-kid requests seconds
/// while everything else stays in milliseconds.
fn latency_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    text: bool,
    xmax: f64,
    samples: &[Sample],
    marks: &Marks,
) -> Result<(), Err> {
    let load: Vec<&Sample> = samples.iter().filter(|s| s.requests > 0).collect();
    let hi = load.iter().map(|s| s.max_ms).fold(1.0, f64::max) * 1.5;
    let lo = load
        .iter()
        .map(|s| s.p50_ms)
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min)
        .min(hi / 10.0)
        * 0.6;
    let lo = if lo.is_finite() && lo > 0.0 { lo } else { 0.01 };
    let mut b = ChartBuilder::on(area);
    b.margin(12);
    if text {
        b.caption("Latency per second (client side, log scale)", (FONT, 20))
            .x_label_area_size(28)
            .y_label_area_size(64);
    }
    let mut chart = b.build_cartesian_2d(0f64..xmax, (lo..hi).log_scale())?;
    if text {
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .y_desc("ms")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| {
                if *v >= 10.0 {
                    format!("{v:.0}")
                } else if *v >= 1.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.2}")
                }
            })
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .draw()?;
    }
    chart.draw_series(std::iter::once(Rectangle::new(
        [(0.0, lo), (marks.warmup.min(xmax), hi)],
        WARMUP.filled(),
    )))?;
    chart.draw_series(
        marks
            .outages
            .iter()
            .map(|(s, e, _)| Rectangle::new([(*s, lo), (*e, hi)], OUTAGE.filled())),
    )?;
    chart.draw_series(
        marks
            .rotations
            .iter()
            .map(|t| PathElement::new(vec![(*t, lo), (*t, hi)], ROTATION)),
    )?;
    let series: [Field; 3] = [
        ("max", RGBColor(200, 200, 200), |s| s.max_ms),
        ("p99", RGBColor(200, 40, 40), |s| s.p99_ms),
        ("p50", RGBColor(30, 120, 60), |s| s.p50_ms),
    ];
    for (name, color, f) in series {
        // 1 px: thicker lines overshoot at the spikes (miter joins).
        let s = chart.draw_series(LineSeries::new(
            load.iter().map(|s| (s.t, f(s).max(lo))),
            color.stroke_width(1),
        ))?;
        if text {
            s.label(name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 14))
            .draw()?;
    }
    Ok(())
}

pub fn draw(
    path: &Path,
    samples: &[Sample],
    outages: &[(f64, f64, Mode)],
    rotations: &[f64],
    warmup: f64,
    duration: f64,
    title: &str,
) -> Result<(), Err> {
    let text = load_font();
    if !text {
        eprintln!("soak: no TrueType font found (set SOAK_FONT); drawing the chart without text");
    }
    let xmax = samples.iter().map(|s| s.t).fold(duration, f64::max).ceil();
    let root = BitMapBackend::new(path, (1400, 1300)).into_drawing_area();
    root.fill(&WHITE)?;
    let body = if text {
        let (top, rest) = root.split_vertically(64);
        top.draw_text(title, &(FONT, 22).into_text_style(&top), (16, 10))?;
        top.draw_text(
            "grey: warm-up (excluded from the start window)   red: issuer outage   blue lines: key rotation",
            &(FONT, 15).into_text_style(&top).color(&RGBColor(90, 90, 90)),
            (16, 38),
        )?;
        rest
    } else {
        root.clone()
    };
    let panels = body.split_evenly((4, 1));
    let marks = Marks {
        outages,
        rotations,
        warmup,
    };
    let pts = |f: fn(&Sample) -> f64| samples.iter().map(|s| (s.t, f(s))).collect::<Vec<_>>();
    panel(
        &panels[0],
        text,
        "Gateway resident memory (VmRSS)",
        "MiB",
        xmax,
        &[(
            "RSS",
            RGBColor(40, 90, 200),
            pts(|s| s.rss_kib as f64 / 1024.0),
        )],
        &marks,
        true,
        "",
    )?;
    panel(
        &panels[1],
        text,
        "Gateway file descriptors and open client connections",
        "count",
        xmax,
        &[
            ("open fds", RGBColor(120, 60, 170), pts(|s| s.fds as f64)),
            (
                "portcullis_connections_open",
                RGBColor(230, 140, 20),
                pts(|s| s.connections_open),
            ),
        ],
        &marks,
        true,
        "",
    )?;
    latency_panel(&panels[2], text, xmax, samples, &marks)?;
    panel(
        &panels[3],
        text,
        "Requests answered per second",
        "req/s",
        xmax,
        &[("answered", RGBColor(60, 60, 60), pts(|s| s.requests as f64))],
        &marks,
        true,
        "seconds since the load started",
    )?;
    root.present()?;
    Ok(())
}
