package procstat

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Profile samples one process's CPU with Linux perf (the binaries under
// test have no pprof endpoint; perf needs no change to them and reads Go
// symbols from unstripped binaries). -profile turns it on; the reports go
// next to the logs.
type Profile struct {
	cmd  *exec.Cmd
	data string
	done chan error
}

// StartProfile records pid's on-CPU stacks (software clock: no hardware
// counters in a VM) until stop.
func StartProfile(pid int, data string) (*Profile, error) {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return nil, fmt.Errorf("-profile needs perf (Debian: linux-perf): %w", err)
	}
	cmd := exec.Command(perf, "record", "-e", "cpu-clock", "-F", "199", "-g", "-p", strconv.Itoa(pid), "-o", data)
	cmd.Stdout, cmd.Stderr = nil, nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting perf: %w", err)
	}
	p := &Profile{cmd: cmd, data: data, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// Stop ends the recording and writes two text reports next to the data:
// where the CPU went by function (self), and by caller (children: which
// higher-level work the time belongs to). It returns the self report's
// top lines.
func (p *Profile) Stop() (string, error) {
	if p == nil {
		return "", nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	var recordErr error // perf record's exit status, shown if perf report then fails
	select {
	case recordErr = <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		recordErr = <-p.done
	}
	var top string
	for _, view := range []struct{ name, children string }{{"self", "--no-children"}, {"cumulative", "--children"}} {
		out, err := exec.Command("perf", "report", "--stdio", view.children, "-g", "none", "--sort", "sym",
			"--percent-limit", "1", "-i", p.data).Output()
		if err != nil {
			if recordErr != nil {
				return "", fmt.Errorf("perf report of %s: %w (perf record: %v)", p.data, err, recordErr)
			}
			return "", fmt.Errorf("perf report of %s: %w", p.data, err)
		}
		path := strings.TrimSuffix(p.data, ".data") + "." + view.name + ".txt"
		if err := os.WriteFile(path, out, 0o644); err != nil {
			return "", err
		}
		if view.name == "self" {
			top = topLines(string(out), 12)
		}
	}
	return top, nil
}

// topLines keeps the first n sample lines of a perf report.
func topLines(report string, n int) string {
	var keep []string
	for _, line := range strings.Split(report, "\n") {
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		keep = append(keep, line)
		if len(keep) == n {
			break
		}
	}
	return strings.Join(keep, "\n")
}
