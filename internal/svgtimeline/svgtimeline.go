// Package svgtimeline draws loss timelines as standalone SVG: one row per
// probe stream, time on the x axis, a red mark for every loss span, and
// vertical lines for events (fault injected, restored, converged). Pure
// Go, no dependencies; the output is deterministic for golden tests.
package svgtimeline

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
)

// Chart is one timeline. Times are seconds.
type Chart struct {
	Title    string
	Subtitle string
	// Start and End bound the x axis.
	Start, End float64
	Rows       []Row
	Markers    []Marker
}

// Row is one stream.
type Row struct {
	Label string
	// Muted rows are drawn grey (e.g. a stream whose endpoint was taken
	// down on purpose).
	Muted bool
	Spans []Span
}

// Span is a period of loss.
type Span struct {
	Start, End float64
	// Open marks loss that lasted to the end (never recovered).
	Open bool
	// Title is the tooltip.
	Title string
}

// Marker is a vertical line at an instant, with an optional shaded
// band from At to Until (e.g. while a command ran).
type Marker struct {
	At    float64
	Until float64
	Label string
	Color string // CSS color
}

// Layout, in pixels.
const (
	width      = 1400
	labelWidth = 200
	rightPad   = 30
	rowHeight  = 18
	topPad     = 96
	bottomPad  = 52
	lossColor  = "#d62728"
	openColor  = "#7f0000"
	minSpanPx  = 1.5
)

// Render writes c as an SVG document.
func Render(w io.Writer, c Chart) error {
	if !(c.End > c.Start) {
		return fmt.Errorf("timeline %q: end %.3fs is not after start %.3fs", c.Title, c.End, c.Start)
	}
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	plotW := float64(width - labelWidth - rightPad)
	x := func(t float64) float64 {
		t = math.Max(c.Start, math.Min(c.End, t))
		return float64(labelWidth) + (t-c.Start)/(c.End-c.Start)*plotW
	}
	height := topPad + len(c.Rows)*rowHeight + bottomPad
	plotTop, plotBottom := topPad, topPad+len(c.Rows)*rowHeight

	p(`<?xml version="1.0" encoding="UTF-8"?>`)
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`, width, height, width, height)
	p(`<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`, width, height)
	p(`<text x="10" y="20" font-size="15" font-weight="bold">%s</text>`, esc(c.Title))
	if c.Subtitle != "" {
		p(`<text x="10" y="38" fill="#444444">%s</text>`, esc(c.Subtitle))
	}
	legend(&b, c.Markers)

	// Rows: alternating bands, labels, loss spans.
	for i, r := range c.Rows {
		y := plotTop + i*rowHeight
		if i%2 == 0 {
			p(`<rect x="%d" y="%d" width="%.1f" height="%d" fill="#f3f3f3"/>`, labelWidth, y, plotW, rowHeight)
		}
		fill, style := "#000000", ""
		if r.Muted {
			fill, style = "#888888", ` font-style="italic"`
		}
		p(`<text x="%d" y="%d" text-anchor="end" fill="%s"%s font-family="DejaVu Sans Mono, monospace" font-size="11">%s</text>`, labelWidth-8, y+rowHeight-5, fill, style, esc(r.Label))
		for _, s := range r.Spans {
			x0, x1 := x(s.Start), x(s.End)
			if x1-x0 < minSpanPx {
				x1 = x0 + minSpanPx
			}
			color := lossColor
			if s.Open {
				color = openColor
			}
			if r.Muted {
				color = "#e8a0a0"
			}
			p(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`, x0, y+3, x1-x0, rowHeight-6, color, esc(s.Title))
		}
	}
	p(`<rect x="%d" y="%d" width="%.1f" height="%d" fill="none" stroke="#999999"/>`, labelWidth, plotTop, plotW, plotBottom-plotTop)

	// Axis with ticks in seconds.
	step := tickStep(c.End - c.Start)
	for t := math.Ceil(c.Start/step) * step; t <= c.End+1e-9; t += step {
		xt := x(t)
		p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#cccccc" stroke-width="0.5"/>`, xt, plotTop, xt, plotBottom)
		p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333333"/>`, xt, plotBottom, xt, plotBottom+5)
		p(`<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, xt, plotBottom+18, fmtSeconds(t, step))
	}
	p(`<text x="%.1f" y="%d" text-anchor="middle" fill="#444444">time (s)</text>`, float64(labelWidth)+plotW/2, plotBottom+38)

	// Event lines on top of everything.
	for _, m := range c.Markers {
		xm := x(m.At)
		if m.Until > m.At {
			p(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" fill-opacity="0.15"/>`, xm, plotTop, x(m.Until)-xm, plotBottom-plotTop, attr(m.Color))
		}
		p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="6,3"/>`, xm, plotTop-6, xm, plotBottom, attr(m.Color))
		p(`<text x="%.1f" y="%d" text-anchor="middle" fill="%s" font-size="11">%s</text>`, xm, plotTop-10, attr(m.Color), esc(fmt.Sprintf("%s %.2fs", m.Label, m.At)))
	}
	p(`</svg>`)
	_, err := w.Write(b.Bytes())
	return err
}

func legend(b *bytes.Buffer, markers []Marker) {
	x, y := 10, 58
	item := func(swatch func(x, y int) string, label string) {
		fmt.Fprintln(b, swatch(x, y))
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", x+22, y+4, esc(label))
		x += 22 + 7*len(label) + 24
	}
	box := func(color string) func(x, y int) string {
		return func(x, y int) string {
			return fmt.Sprintf(`<rect x="%d" y="%d" width="16" height="10" fill="%s"/>`, x, y-5, color)
		}
	}
	item(box(lossColor), "loss")
	item(box(openColor), "loss until the end")
	seen := map[string]bool{}
	for _, m := range markers {
		if seen[m.Label] {
			continue
		}
		seen[m.Label] = true
		color := attr(m.Color)
		item(func(x, y int) string {
			return fmt.Sprintf(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="6,3"/>`, x, y, x+16, y, color)
		}, m.Label)
	}
}

// tickStep picks 1, 2 or 5 times a power of ten for about 10 ticks.
func tickStep(span float64) float64 {
	raw := span / 10
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*pow {
			return m * pow
		}
	}
	return 10 * pow
}

func fmtSeconds(t, step float64) string {
	decimals := 0
	if step < 1 {
		decimals = int(math.Ceil(-math.Log10(step)))
	}
	return fmt.Sprintf("%.*f", decimals, t)
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// attr keeps a color from breaking out of its attribute.
func attr(s string) string {
	if s == "" || strings.ContainsAny(s, `"<>&`) {
		return "#000000"
	}
	return s
}
