// Package procstat reads what a process under test costs from /proc (peak
// RSS, CPU seconds), how busy the whole machine was, and, with Linux perf,
// where a process spent its CPU.
package procstat
