package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// How the report and the progress lines write numbers, and its text charts.

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// ms is a duration in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func secs(d time.Duration) string {
	if d == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func ratio(a, b float64) string {
	if b == 0 || a == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func perJobSet(n int64, jobsets int) string {
	if jobsets == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", float64(n)/float64(jobsets))
}

func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

type barRow struct {
	label string
	value float64
}

// barChart's values print with 2 decimals; countChart's as integers.
func countChart(title string, rows []barRow) string {
	return chart(title, rows, "%.0f")
}

// barChart is a text bar chart, the plot of the report (no plotting
// dependency; it reads in a terminal and in markdown).
func barChart(title string, rows []barRow) string { return chart(title, rows, "%.2f") }

func chart(title string, rows []barRow, format string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", title)
	peak, width := 0.0, 0
	for _, r := range rows {
		peak = math.Max(peak, r.value)
		width = int(math.Max(float64(width), float64(len([]rune(r.label)))))
	}
	for _, r := range rows {
		n := 0
		if peak > 0 {
			n = int(math.Round(50 * r.value / peak))
		}
		fmt.Fprintf(&b, "  %-*s %s "+format+"\n", width, r.label, strings.Repeat("█", n), r.value)
	}
	return b.String()
}

// latencyHistogram is a text histogram of latencies in log-spaced buckets.
func latencyHistogram(title string, lat []time.Duration) string {
	bounds := []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
		2 * time.Second, 3 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Hour}
	labels := []string{"<0.1s", "<0.25s", "<0.5s", "<1s", "<2s", "<3s", "<5s", "<10s", "<30s", "≥30s"}
	countsBy := make([]int, len(bounds))
	for _, l := range lat {
		i := slices.IndexFunc(bounds, func(b time.Duration) bool { return l < b })
		if i < 0 {
			i = len(bounds) - 1
		}
		countsBy[i]++
	}
	rows := make([]barRow, len(bounds))
	for i := range bounds {
		rows[i] = barRow{labels[i], float64(countsBy[i])}
	}
	return countChart(title+": JobSets by submit → all Jobs latency", rows)
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}
