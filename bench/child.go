package main

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// child is a process the harness started: a relay or the receiver. Every child is also in
// the children registry, so that killAll can end whatever is left on the way out, and each
// gets SIGKILL from the kernel if the harness dies without cleaning up (Pdeathsig).
type child struct {
	name    string
	cmd     *exec.Cmd
	log     *os.File
	started time.Time
	done    chan struct{}
	err     error // the exit status, once done is closed
}

var children struct {
	sync.Mutex
	live map[*child]struct{}
}

// startChild starts cmd and watches it. log, if not nil, is closed after the process exits.
func startChild(cmd *exec.Cmd, name string, log *os.File) (*child, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c := &child{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	c.started = time.Now()
	if err := cmd.Start(); err != nil {
		if log != nil {
			log.Close()
		}
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	children.Lock()
	if children.live == nil {
		children.live = map[*child]struct{}{}
	}
	children.live[c] = struct{}{}
	children.Unlock()
	go func() {
		c.err = cmd.Wait()
		if log != nil {
			log.Close()
		}
		children.Lock()
		delete(children.live, c)
		children.Unlock()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL. It reports whether the process
// exited on its own within the grace, and its exit error.
func (c *child) stop(grace time.Duration) (clean bool, err error) {
	if c.exited() {
		return true, c.err
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return true, c.err
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
		return false, c.err
	}
}

// killAll stops every child still running, in parallel.
func killAll(grace time.Duration) {
	children.Lock()
	live := make([]*child, 0, len(children.live))
	for c := range children.live {
		live = append(live, c)
	}
	children.Unlock()
	var wg sync.WaitGroup
	for _, c := range live {
		wg.Go(func() { _, _ = c.stop(grace) })
	}
	wg.Wait()
}
