package pgtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Freeze stops the server's processes (SIGSTOP) without closing their
// connections: a hung database host or a network partition as clients
// see it, where nothing answers and nothing is reset. Thaw resumes them;
// call it before Down or Stop.
func (s *Server) Freeze() error { return s.signalTree(syscall.SIGSTOP) }

// Thaw resumes the processes Freeze stopped.
func (s *Server) Thaw() error { return s.signalTree(syscall.SIGCONT) }

// signalTree sends sig to the server's process (runuser when the tests
// run as root) and every process under it: PostgreSQL's backends each
// lead a session of their own, so a process group does not reach them.
func (s *Server) signalTree(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("pgtest: the server is not running")
	}
	children := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the process ended meanwhile
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(b), ')')
		fields := strings.Fields(string(b[i+1:]))
		if i < 0 || len(fields) < 2 {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		ppid, _ := strconv.Atoi(fields[1])
		children[ppid] = append(children[ppid], pid)
	}
	var errs []error
	for todo := []int{s.cmd.Process.Pid}; len(todo) > 0; {
		pid := todo[len(todo)-1]
		todo = append(todo[:len(todo)-1], children[pid]...)
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("signal %v to %d: %w", sig, pid, err))
		}
	}
	return errors.Join(errs...)
}
