package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// webDriver is a minimal W3C WebDriver client for Debian's chromedriver
// and chromium: enough to fill in a form and read a page, with no
// dependency beyond the standard library.
type webDriver struct {
	t       testing.TB
	base    string // http://127.0.0.1:port/session/<id>
	elemKey string
}

// startBrowser starts chromedriver and a headless Chromium session. The
// test command (`make test`) installs both when they are missing.
func startBrowser(t testing.TB) *webDriver {
	t.Helper()
	driver, err := exec.LookPath("chromedriver")
	if err != nil {
		t.Fatalf("chromedriver not found: run the tests with `make test`, which installs Debian's chromium and chromium-driver")
	}
	chrome := "/usr/bin/chromium"
	if _, err := os.Stat(chrome); err != nil {
		t.Fatalf("%s not found: run the tests with `make test`, which installs it", chrome)
	}
	port := freePort(t)
	cmd := exec.Command(driver, "--port="+strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromedriver: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	root := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(root + "/status")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromedriver did not start: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": chrome,
			"args": []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
				"--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
				"--disable-sync", "--user-data-dir=" + t.TempDir()},
		},
	}}}
	var out struct {
		Value struct {
			SessionID string `json:"sessionId"`
		} `json:"value"`
	}
	wd := &webDriver{t: t, base: root, elemKey: "element-6066-11e4-a52e-4f735466cecf"}
	wd.call(http.MethodPost, "/session", caps, &out)
	if out.Value.SessionID == "" {
		t.Fatal("chromedriver returned no session id")
	}
	wd.base = root + "/session/" + out.Value.SessionID
	t.Cleanup(func() { wd.call(http.MethodDelete, "", nil, nil) })
	return wd
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (wd *webDriver) call(method, path string, in, out any) {
	wd.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, wd.base+path, body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		wd.t.Fatalf("webdriver %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		wd.t.Fatalf("webdriver %s %s: HTTP %d: %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			wd.t.Fatalf("webdriver %s %s: %v", method, path, err)
		}
	}
}

// Navigate opens a URL and waits for the page to load.
func (wd *webDriver) Navigate(url string) {
	wd.call(http.MethodPost, "/url", map[string]string{"url": url}, nil)
}

// URL is the current page's address.
func (wd *webDriver) URL() string {
	var out struct{ Value string }
	wd.call(http.MethodGet, "/url", nil, &out)
	return out.Value
}

// Source is the current page's HTML.
func (wd *webDriver) Source() string {
	var out struct{ Value string }
	wd.call(http.MethodGet, "/source", nil, &out)
	return out.Value
}

func (wd *webDriver) find(css string) string {
	var out struct{ Value map[string]string }
	wd.call(http.MethodPost, "/element", map[string]string{"using": "css selector", "value": css}, &out)
	return out.Value[wd.elemKey]
}

// Type types text into the element matching css.
func (wd *webDriver) Type(css, text string) {
	wd.call(http.MethodPost, "/element/"+wd.find(css)+"/value", map[string]string{"text": text}, nil)
}

// Click clicks the element matching css.
func (wd *webDriver) Click(css string) {
	wd.call(http.MethodPost, "/element/"+wd.find(css)+"/click", map[string]string{}, nil)
}

// WaitURL waits until the current URL satisfies ok.
func (wd *webDriver) WaitURL(ok func(string) bool) string {
	deadline := time.Now().Add(20 * time.Second)
	for {
		u := wd.URL()
		if ok(u) {
			return u
		}
		if time.Now().After(deadline) {
			wd.t.Fatalf("timed out waiting for the browser; it is at %s", u)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitSource waits until the current page's HTML satisfies ok: a click
// or Enter may return before the page it submits has loaded.
func (wd *webDriver) WaitSource(ok func(string) bool) string {
	deadline := time.Now().Add(20 * time.Second)
	for {
		src := wd.Source()
		if ok(src) {
			return src
		}
		if time.Now().After(deadline) {
			wd.t.Fatalf("timed out waiting for the page; it shows:\n%s", src)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SetViewport resizes the window so that the page's viewport is width
// by height CSS pixels (the window's frame, if any, is measured first).
func (wd *webDriver) SetViewport(width, height int) {
	wd.t.Helper()
	wd.call(http.MethodPost, "/window/rect", map[string]int{"width": width, "height": height}, nil)
	var inner []int
	wd.Exec("return [window.innerWidth, window.innerHeight]", &inner)
	if len(inner) == 2 && (inner[0] != width || inner[1] != height) {
		wd.call(http.MethodPost, "/window/rect", map[string]int{"width": 2*width - inner[0], "height": 2*height - inner[1]}, nil)
	}
}

// Exec runs a script in the page and decodes what it returns into out.
func (wd *webDriver) Exec(script string, out any) {
	wd.t.Helper()
	var res struct{ Value json.RawMessage }
	wd.call(http.MethodPost, "/execute/sync", map[string]any{"script": script, "args": []any{}}, &res)
	if out != nil {
		if err := json.Unmarshal(res.Value, out); err != nil {
			wd.t.Fatalf("script result %s: %v", res.Value, err)
		}
	}
}

// Screenshot returns a PNG of the viewport.
func (wd *webDriver) Screenshot() []byte {
	wd.t.Helper()
	var res struct{ Value string }
	wd.call(http.MethodGet, "/screenshot", nil, &res)
	png, err := base64.StdEncoding.DecodeString(res.Value)
	if err != nil {
		wd.t.Fatalf("screenshot: %v", err)
	}
	return png
}
