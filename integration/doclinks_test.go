package integration

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// The documentation promises that every link resolves inside the
// repository: a guide moved or a heading renamed must not leave a link
// pointing nowhere. TestDocLinks checks every relative link of every
// Markdown file: the file (or directory) must exist and, for a link into
// a Markdown file with a #fragment, a heading must have that anchor.

var (
	mdLink     = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	inlineCode = regexp.MustCompile("`[^`]*`")
	mdHeading  = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)
	urlScheme  = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// repoRoot is the repository's top directory (this package is one below).
const repoRoot = ".."

// readmeMaxBytes keeps the README short: one section per capability (a
// Caddyfile and a few commands), with the details in docs/.
const readmeMaxBytes = 18000

func TestDocLinks(t *testing.T) {
	files := markdownFiles(t)
	if len(files) < 10 {
		t.Fatalf("found only %d Markdown files under %s: %v", len(files), repoRoot, files)
	}
	anchorCache := map[string]map[string]bool{}
	for _, f := range files {
		for _, l := range mdLinks(t, f) {
			target, frag, _ := strings.Cut(l.target, "#")
			path := f
			if target != "" {
				path = filepath.Join(filepath.Dir(f), filepath.FromSlash(target))
			}
			rel, err := filepath.Rel(repoRoot, path)
			if err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s:%d: link %q leaves the repository", l.file, l.line, l.target)
				continue
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s:%d: link %q: no such file %s", l.file, l.line, l.target, rel)
				continue
			}
			if frag == "" || !strings.HasSuffix(path, ".md") {
				continue
			}
			a, ok := anchorCache[path]
			if !ok {
				a = headingAnchors(t, path)
				anchorCache[path] = a
			}
			if !a[frag] {
				t.Errorf("%s:%d: link %q: %s has no heading with the anchor #%s", l.file, l.line, l.target, rel, frag)
			}
		}
	}
}

// TestReadmeIsShortAndLocal: the README stays short and links only to
// files in the repository.
func TestReadmeIsShortAndLocal(t *testing.T) {
	readme := filepath.Join(repoRoot, "README.md")
	raw, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > readmeMaxBytes {
		t.Errorf("README.md is %d bytes, more than %d: move the details into docs/", len(raw), readmeMaxBytes)
	}
	for _, l := range mdLinks(t, readme) {
		if urlScheme.MatchString(l.target) {
			t.Errorf("README.md:%d: link %q points outside the repository", l.line, l.target)
		}
	}
	for _, want := range []string{"CHANGELOG.md", "LICENSE", "docs/reference.md", "docs/security.md", "docs/operations.md"} {
		if !strings.Contains(string(raw), "]("+want+")") {
			t.Errorf("README.md does not link to %s", want)
		}
	}
}

// TestDocLinkChecker: the checker's own pieces, so that a checker that
// finds nothing cannot pass silently.
func TestDocLinkChecker(t *testing.T) {
	for h, want := range map[string]string{
		"Transport security: the TLS rule":            "transport-security-the-tls-rule",
		"4. Secrets: `{env.VAR}`, not `{$VAR}`":       "4-secrets-envvar-not-var",
		"The `oauth` global option (the `oauth` app)": "the-oauth-global-option-the-oauth-app",
		"SAML 2.0 bearer grant":                       "saml-20-bearer-grant",
	} {
		if got := headingSlug(h); got != want {
			t.Errorf("headingSlug(%q) = %q, want %q", h, got, want)
		}
	}
	dir := t.TempDir()
	md := filepath.Join(dir, "a.md")
	body := "# Title\n\nSee [b](b.md), [t](#title), [x](https://example.com) and `[c](c.md)`.\n\n```\n[d](d.md)\n```\n"
	if err := os.WriteFile(md, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range mdLinks(t, md) {
		got = append(got, l.target)
	}
	if fmt.Sprint(got) != "[b.md #title]" {
		t.Errorf("mdLinks = %v, want the relative links outside code: [b.md #title]", got)
	}
}

type docLink struct {
	file   string
	line   int
	target string
}

// markdownFiles lists the *.md files of the repository, skipping hidden
// directories (.git, .ci).
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != repoRoot && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") {
			// node_modules holds the npm test client's packages
			// (integration/testdata/dpop-node): their docs are not ours.
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".md") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// mdLinks returns the relative links of a Markdown file, outside fenced
// code blocks and inline code.
func mdLinks(t *testing.T, path string) []docLink {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var links []docLink
	fenced := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		line = inlineCode.ReplaceAllString(line, "")
		for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
			if urlScheme.MatchString(m[1]) {
				continue
			}
			links = append(links, docLink{file: path, line: n, target: m[1]})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return links
}

// headingAnchors returns the anchors GitHub gives a file's headings: a
// heading's slug, and slug-1, slug-2... for repeats.
func headingAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		m := mdHeading.FindStringSubmatch(line)
		if fenced || m == nil {
			continue
		}
		s := headingSlug(m[2])
		if n := seen[s]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			anchors[s] = true
		}
		seen[s]++
	}
	return anchors
}

// headingSlug is GitHub's anchor for a heading: lower case, spaces to
// hyphens, every character but letters, digits, '_' and '-' dropped.
func headingSlug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
