package web

// Text is every string the sign-in pages show. Templates reach it as .T;
// a string with a {client} or {user} place holder is filled in with the
// template function fill, which escapes both the text and the value.
// Messages are sentences: a capital letter and a full stop.
type Text struct {
	// Lang is the language of the pages (the lang attribute of <html>).
	Lang string

	// Page titles.
	SignInTitle, ConsentTitle, SignOutTitle, SignedOutTitle, StillSignedInTitle, ErrorTitle string

	// The login page.
	SignInLead          string // {client}
	UserNameLabel       string
	PasswordLabel       string
	SignInButton        string
	NotUser             string // {user}
	SignInAsSomeoneElse string

	// The consent page.
	SignedInAs    string // {user}
	ConsentLead   string // {client}
	ClientIDLabel string
	IdentityOnly  string
	ClientWebsite string
	ClientPolicy  string
	AllowButton   string
	DenyButton    string

	// The device grant's verification page.
	DeviceTitle     string
	DeviceLead      string
	UserCodeLabel   string
	ContinueButton  string
	DeviceCheckCode string // {code}, in the consent page's message
	DeviceApproved  string
	DeviceDenied    string

	// The sign-out pages.
	SignOutQuestion     string // {user}
	SignOutQuestionAnon string
	SignOutButton       string
	CancelButton        string
	SignedOut           string
	StillSignedIn       string
	CloseWindow         string

	// The error page's advice under every error.
	ErrorAdvice string

	// Messages of the login form.
	MissingCredentials string
	WrongCredentials   string
	LockedOut          string

	// Messages of the device grant's verification page.
	DeviceCodeWrong string
	DeviceThrottled string
	DeviceCodeGone  string
	DeviceMethods   string

	// Error pages.
	NeedHTTPS            string
	DuplicateCookie      string
	RequestTooLarge      string
	RequestUnreadable    string
	FormPostsOnly        string
	FormExpired          string
	SessionEnded         string
	ClientGone           string
	ClientUnknown        string
	RedirectMissing      string
	RedirectUnregistered string
	RepeatedParameter    string
	RequestURIInvalid    string
	AuthorizeMethods     string
	SignOutMethods       string
	SignOutRepeated      string
	ServiceUnavailable   string
	SignInUnavailable    string
	SignOutUnavailable   string

	// The page shown instead of sending an error back to a client that
	// registered itself (RFC 9700 §4.11.2): UntrustedError, the error
	// code after it, and a link back.
	UntrustedError string
	ReturnToApp    string

	// The consent page of a client that registered itself: the warning
	// that nobody checked its name, and where the user is sent back to.
	UnverifiedClient string
	ReturnHost       string // {host}

	// Scopes describes scopes on the consent page, by scope; the
	// operator's scope_description entries override and extend it. A
	// scope without a description is shown as itself.
	Scopes map[string]string
}

// English is the built-in text of the pages.
var English = Text{
	Lang: "en",

	SignInTitle:        "Sign in",
	ConsentTitle:       "Allow access",
	SignOutTitle:       "Sign out",
	SignedOutTitle:     "Signed out",
	StillSignedInTitle: "Still signed in",
	ErrorTitle:         "Sign-in error",

	SignInLead:          "{client} asks you to sign in.",
	UserNameLabel:       "User name",
	PasswordLabel:       "Password",
	SignInButton:        "Sign in",
	NotUser:             "Not {user}?",
	SignInAsSomeoneElse: "Sign in as someone else",

	SignedInAs:    "Signed in as {user}.",
	ConsentLead:   "{client} asks to:",
	ClientIDLabel: "Client ID",
	IdentityOnly:  "Know who you are",
	ClientWebsite: "Website",
	ClientPolicy:  "Privacy policy",
	AllowButton:   "Allow",
	DenyButton:    "Deny",

	DeviceTitle:     "Connect a device",
	DeviceLead:      "Enter the code your device shows.",
	UserCodeLabel:   "Code",
	ContinueButton:  "Continue",
	DeviceCheckCode: "Allow only if you started this on your own device and it shows the code {code}.",
	DeviceApproved:  "Your device is connected. You can close this window.",
	DeviceDenied:    "Access denied: your device is not connected. You can close this window.",

	SignOutQuestion:     "Sign out {user} from this sign-in service?",
	SignOutQuestionAnon: "Sign out from this sign-in service?",
	SignOutButton:       "Sign out",
	CancelButton:        "Cancel",
	SignedOut:           "You are signed out.",
	StillSignedIn:       "You are still signed in.",
	CloseWindow:         "You can close this window.",

	ErrorAdvice: "Go back to the application and start again. If this keeps happening, tell its operator.",

	MissingCredentials: "Enter your user name and password.",
	WrongCredentials:   "The user name or password is wrong.",
	LockedOut:          "Too many failed sign-ins. Wait a few minutes and try again.",

	DeviceCodeWrong: "That code is wrong or has expired. Check the code your device shows.",
	DeviceThrottled: "Too many wrong codes. Wait a minute and try again.",
	DeviceCodeGone:  "This code has expired or was already used. Start again on your device.",
	DeviceMethods:   "The device page accepts GET and POST only.",

	NeedHTTPS:            "This page must be reached over HTTPS.",
	DuplicateCookie:      "Your browser sent a sign-in cookie twice (another site under the same domain may have set one). Clear this site's cookies and start again.",
	RequestTooLarge:      "The request is too large.",
	RequestUnreadable:    "The request could not be read.",
	FormPostsOnly:        "This page accepts form posts only.",
	FormExpired:          "This form has expired or did not come from this site. Start again from the application.",
	SessionEnded:         "Your sign-in session ended. Start again from the application.",
	ClientGone:           "The application is no longer registered.",
	ClientUnknown:        "The application that sent you here is not registered.",
	RedirectMissing:      "The application did not say where to send you back (redirect_uri is required for OpenID Connect).",
	RedirectUnregistered: "The application sent you with a redirect address it has not registered.",
	UntrustedError:       "The request could not be completed, and this application registered itself, so you were not sent back to it automatically. The error was:",
	ReturnToApp:          "Return to the application",
	UnverifiedClient:     "This application registered itself. Its name and links were not verified by the operator of this server: allow it only if you started this sign-in from it.",
	ReturnHost:           "If you allow it, you will be sent to {host}.",
	RepeatedParameter:    "The authorization request repeats a parameter.",
	RequestURIInvalid:    "This sign-in link has expired, was already used or belongs to another application (invalid_request_uri).",
	AuthorizeMethods:     "The authorization endpoint accepts GET and POST only.",
	SignOutMethods:       "Sign-out accepts GET and POST only.",
	SignOutRepeated:      "The sign-out request repeats a parameter.",
	ServiceUnavailable:   "The sign-in service cannot complete the request right now. Try again later.",
	SignInUnavailable:    "Sign-in is unavailable right now. Try again shortly.",
	SignOutUnavailable:   "Sign-out is unavailable right now. Try again shortly.",

	// The scopes of OpenID Connect Core §5.4 and §11.
	Scopes: map[string]string{
		"openid":         "Know who you are",
		"profile":        "See your name and basic profile",
		"email":          "See your email address",
		"address":        "See your postal address",
		"phone":          "See your phone number",
		"offline_access": "Keep access while you are not using it",
	},
}
