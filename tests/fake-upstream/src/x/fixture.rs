//! The fake X API's content: N users with M posts each, a known, deterministic mix of
//! originals, replies, retweets and quotes, with hashtags and creation times, so a test knows
//! exactly what a filter must drop.
//!
//! Post ids are snowflake-like: they grow with creation time across all users (post `k` of user
//! `u` is number `k * users + u` in creation order), so "newer" is "larger id", as on X.

use std::fmt::Write as _;

/// User `index` has the id `USER_ID_BASE + index`.
pub const USER_ID_BASE: u64 = 2_244_994_945;
/// Post number `n` (in creation order) has the id `POST_ID_BASE + n`.
pub const POST_ID_BASE: u64 = 1_460_323_737_035_677_698;
/// 2024-01-01T00:00:00Z; post number `n` was created `n` seconds later.
pub const FIXTURE_EPOCH_UNIX: i64 = 1_704_067_200;

/// What a post is, as X's `referenced_tweets` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PostKind {
    Original,
    /// `referenced_tweets: [{type: "replied_to"}]`; v1.1 `in_reply_to_status_id_str`.
    Reply,
    /// `referenced_tweets: [{type: "retweeted"}]`; v1.1 `retweeted_status`, text `RT @…`.
    Retweet,
    /// `referenced_tweets: [{type: "quoted"}]`; v1.1 `is_quote_status: true`.
    Quote,
}

/// One post of a user's timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Post {
    pub id: u64,
    pub author: u64,
    pub created_unix: i64,
    pub kind: PostKind,
    /// Without `#`, as X's `entities.hashtags[].tag` gives them.
    pub hashtags: Vec<String>,
    pub text: String,
    /// The post a reply, retweet or quote refers to.
    pub referenced: Option<u64>,
}

/// How to build the fixture.
#[derive(Clone, Debug)]
pub struct FixtureSpec {
    pub users: u32,
    pub posts_per_user: u32,
    /// Users (by index) with a different number of posts: a very active user.
    pub posts_override: Vec<(u32, u32)>,
}

impl Default for FixtureSpec {
    fn default() -> Self {
        FixtureSpec {
            users: 3,
            posts_per_user: 10,
            posts_override: Vec::new(),
        }
    }
}

/// The hashtags the generator uses, in rotation; `Ad` is mixed case so filters must fold case.
pub const HASHTAGS: [&str; 3] = ["rust", "Ad", "tsunagi"];

/// The kind of post `k` of user `u`: out of every 10 posts 1 reply, 1 retweet, 1 quote
/// (rotated by user so every position sees every kind).
pub fn kind_of(user: u32, k: u32) -> PostKind {
    match (u64::from(k) + u64::from(user) * 3) % 10 {
        3 => PostKind::Reply,
        6 => PostKind::Retweet,
        9 => PostKind::Quote,
        _ => PostKind::Original,
    }
}

/// The hashtags of post `k` of user `u`: every 4th post has one, every 12th a second.
pub fn hashtags_of(user: u32, k: u32) -> Vec<String> {
    let n = u64::from(k) + u64::from(user);
    let mut tags = Vec::new();
    if n % 4 == 0 {
        tags.push(HASHTAGS[(n / 4 % 3) as usize].to_owned());
    }
    if n % 12 == 0 {
        tags.push("news".to_owned());
    }
    tags
}

/// Builds the timelines: index = user index, each oldest first.
pub fn build(spec: &FixtureSpec) -> Vec<Vec<Post>> {
    let users = spec.users.max(1);
    (0..spec.users)
        .map(|user| {
            let count = spec
                .posts_override
                .iter()
                .rev()
                .find(|(u, _)| *u == user)
                .map_or(spec.posts_per_user, |(_, n)| *n);
            (0..count)
                .map(|k| {
                    let number = u64::from(k) * u64::from(users) + u64::from(user);
                    generated_post(user, k, number)
                })
                .collect()
        })
        .collect()
}

fn generated_post(user: u32, k: u32, number: u64) -> Post {
    let kind = kind_of(user, k);
    let hashtags = hashtags_of(user, k);
    let author = USER_ID_BASE + u64::from(user);
    let referenced = (kind != PostKind::Original).then(|| POST_ID_BASE - 1 - u64::from(k));
    let mut text = match kind {
        PostKind::Retweet => format!("RT @someone: post {k} of user {user} (retweeted)"),
        PostKind::Reply => format!("@someone post {k} of user {user} (a reply)"),
        PostKind::Quote => format!("post {k} of user {user} (a quote)"),
        PostKind::Original => format!("post {k} of user {user}"),
    };
    for tag in &hashtags {
        let _ = write!(text, " #{tag}");
    }
    Post {
        id: POST_ID_BASE + number,
        author,
        created_unix: FIXTURE_EPOCH_UNIX + number as i64,
        kind,
        hashtags,
        text,
        referenced,
    }
}

/// Where each hashtag of `text` starts and ends (in chars), as X's entities give them.
pub fn hashtag_spans(text: &str, tags: &[String]) -> Vec<(usize, usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut spans = Vec::new();
    let mut from = 0;
    for tag in tags {
        let needle: Vec<char> = std::iter::once('#').chain(tag.chars()).collect();
        let found = (from..chars.len().saturating_sub(needle.len() - 1))
            .find(|&i| chars[i..i + needle.len()] == needle[..]);
        if let Some(start) = found {
            spans.push((start, start + needle.len(), tag.clone()));
            from = start + needle.len();
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_known_and_ids_grow_with_time() {
        let spec = FixtureSpec {
            users: 4,
            posts_per_user: 20,
            posts_override: vec![(2, 35)],
        };
        let timelines = build(&spec);
        assert_eq!(timelines.len(), 4);
        assert_eq!(timelines[2].len(), 35);
        assert_eq!(timelines[0].len(), 20);
        let mut all: Vec<&Post> = timelines.iter().flatten().collect();
        all.sort_by_key(|post| post.id);
        for pair in all.windows(2) {
            assert!(pair[0].created_unix < pair[1].created_unix);
        }
        let kinds = |kind| timelines[0].iter().filter(|p| p.kind == kind).count();
        assert_eq!(kinds(PostKind::Reply), 2);
        assert_eq!(kinds(PostKind::Retweet), 2);
        assert_eq!(kinds(PostKind::Quote), 2);
        assert_eq!(kinds(PostKind::Original), 14);
        let post = &timelines[0][8];
        assert_eq!(post.hashtags, ["tsunagi"]);
        assert_eq!(post.text, "post 8 of user 0 #tsunagi");
        assert_eq!(
            hashtag_spans(&post.text, &post.hashtags),
            [(17, 25, "tsunagi".to_owned())]
        );
    }
}
