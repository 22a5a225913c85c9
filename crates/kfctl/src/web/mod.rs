//! The click-to-deploy web app.
