package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a child process whose output goes to a log file. Started by
// StartProcess it gets SIGKILL if the test binary dies without stopping it
// (PR_SET_PDEATHSIG), so a crashed or timed-out test leaves nothing behind.
type Process struct {
	Name    string
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	// exitErr is cmd.Wait's result, valid once done is closed.
	exitErr error
}

// StartProcess starts bin with args, its output in logPath, with env added
// to this process's environment.
func StartProcess(name, logPath, bin string, args, env []string) (*Process, error) {
	return startProcess(name, logPath, bin, args, env, &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL})
}

// StartDaemon is StartProcess for a process that outlives this one (in a
// session of its own): only a local developer fleet wants that.
func StartDaemon(name, logPath, bin string, args []string) (*Process, error) {
	return startProcess(name, logPath, bin, args, nil, &syscall.SysProcAttr{Setsid: true})
}

func startProcess(name, logPath, bin string, args, env []string, attr *syscall.SysProcAttr) (*Process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("log file for %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.exitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Signal sends sig (SIGSTOP and SIGCONT freeze and thaw the process).
func (p *Process) Signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s to %s: %w", sig, p.Name, err)
	}
	return nil
}

// Exited returns an error naming the process and the tail of its log if it
// is gone: a component that crashes must fail a test, not time it out.
func (p *Process) Exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); last lines of %s:\n%s", p.Name, p.exitErr, p.LogPath, Tail(p.LogPath, 15))
	default:
		return nil
	}
}

// Kill sends SIGKILL (a crash: no shutdown, no goodbye) and waits for the
// process to be gone. It is idempotent.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM, then SIGKILL after 10s; a stopped (SIGSTOP) process
// is continued first so it can exit. It is idempotent.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

// Tail is the last n lines of a file, for failure messages.
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Children lists the live child processes of this process by pid, with
// their command names (envtest's kube-apiserver and etcd are children too).
func Children() (map[int]string, error) {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name (field 2) may hold spaces: the fields after its
		// closing parenthesis are state and ppid.
		s := string(stat)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == self && fields[0] != "Z" {
			out[pid] = s[open+1 : closing]
		}
	}
	return out, nil
}

// childProcess finds a child of this process by command name whose
// command line has an argument equal to arg (the one kube-apiserver of
// several that serves a given port), and returns its pid and command line.
func childProcess(name, arg string) (int, []string, error) {
	kids, err := Children()
	if err != nil {
		return 0, nil, err
	}
	for pid, comm := range kids {
		if comm != name {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
		if slices.Contains(args[1:], arg) {
			return pid, args, nil
		}
	}
	return 0, nil, fmt.Errorf("no child process %s with argument %s", name, arg)
}

// KillUnder kills (SIGTERM, then SIGKILL after 5s) every process whose
// executable path lies under dir, and returns how many it found: what a
// tool that daemonizes (kwokctl) may leave behind in its work directory.
func KillUnder(dir string) int {
	dir = filepath.Clean(dir) + string(filepath.Separator)
	find := func() []int {
		var pids []int
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err == nil && strings.HasPrefix(string(raw), dir) {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	found := find()
	Terminate(found, 5*time.Second)
	return len(found)
}

// Terminate sends SIGTERM to pids, waits up to grace for them to exit, and
// sends SIGKILL to those still there. They must not be unreaped children of
// this process (a zombie counts as alive); Process.Stop is for those.
func Terminate(pids []int, grace time.Duration) {
	pids = slices.DeleteFunc(slices.Clone(pids), func(pid int) bool { return syscall.Kill(pid, syscall.SIGTERM) != nil })
	for deadline := time.Now().Add(grace); len(pids) > 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		pids = slices.DeleteFunc(pids, func(pid int) bool { return syscall.Kill(pid, 0) != nil })
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
